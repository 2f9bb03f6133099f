"""One HTTP/2 client connection: the protocol (server.py, sans-IO) on a
Stream, its streams (stream.py), flow control toward the client, and the
bounds a public listener needs (docs/http2.md):

- SETTINGS: ``http2.max_concurrent_streams`` (a stream over it is refused),
  the windows, the frame size, the HPACK table, and a header list of at most
  ``limits.header_bytes`` decoded (431 beyond); a header block (HEADERS and
  its CONTINUATION frames) is also bounded by ``limits.header_bytes`` as it
  arrives, before any of it is decoded;
- rapid reset and control-frame floods (guard.py): GOAWAY ENHANCE_YOUR_CALM;
- output: while ``limits.buffer`` waits for the client to read, the
  connection stops reading it (so PING and SETTINGS acknowledgements cannot
  pile up) and moves no more response data into frames;
- the connection's own deadlines: the preface within ``timeouts.header``,
  and ``timeouts.idle`` without a stream;
- shutdown: GOAWAY with the last stream id taken; those streams finish,
  later ones are refused (the client may retry them anywhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from ..http import codec
from ..http.client import LINGER_SECONDS
from ..http.identity import ClientIdentity
from ..io.stream import Stream
from ..proxyproto.header import Addresses
from .frames import Code
from .guard import Guard
from .hpack_codec import encode
from .server import ConnectionFailure, ServerConnection
from .stream import H2Stream

if TYPE_CHECKING:
    from ..worker_view import WorkerView

log = structlog.get_logger("l7lb.http2")


class Http2Connection:
    __slots__ = ("worker", "stream", "who", "proto", "streams", "guard", "limit", "closed",
                 "closing", "last_id", "goaway_sent", "deadline", "lingering", "flushing",
                 "output_full",
                 "__weakref__")

    def __init__(self, worker: "WorkerView", stream: Stream, who: ClientIdentity) -> None:
        self.worker, self.stream, self.who = worker, stream, who
        settings = worker.config.balancer.http2
        self.limit = worker.config.limits.buffer
        self.proto = ServerConnection(
            self, max_streams=settings.max_concurrent_streams,
            stream_window=settings.initial_window_size,
            connection_window=settings.connection_window_size,
            max_frame=settings.max_frame_size, table_size=settings.header_table_size,
            header_bytes=worker.config.limits.header_bytes)
        self.streams: dict[int, H2Stream] = {}
        self.guard = Guard(settings.max_resets_per_second, settings.max_control_frames_per_second)
        self.closed = False
        self.closing = False          # GOAWAY sent or received: no new stream
        self.last_id = 0              # the highest stream id taken
        self.goaway_sent = False
        self.lingering = False        # half-closed: what the client still sends is dropped
        self.flushing = False         # a write is due at the end of this loop iteration
        self.output_full = False      # response data waits for room in the output
        # The connection's own deadline: the preface, then idleness without streams.
        self.deadline = worker.clock.now + worker.config.timeouts.header
        stream.own(self)
        self._send()
        worker.track(self)

    # -- input -----------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        if self.lingering or self.closed:
            return
        self.deadline = self.worker.clock.now + self.worker.config.timeouts.idle
        try:
            self.proto.receive(data)
        except ConnectionFailure as failure:
            self._fail(str(failure), failure.code)
            return
        self._send()

    # -- Handler: what the protocol reads --------------------------------------
    def got_request(self, sid: int, block: codec.Headers, ended: bool) -> None:
        if self.closing:
            self.proto.reset(sid, Code.REFUSED_STREAM)
            return
        self._stream(sid).begin(block, ended)

    def got_too_large(self, sid: int, ended: bool) -> None:
        self._stream(sid).refuse(431, "request header fields larger than limits.header_bytes")

    def _stream(self, sid: int) -> H2Stream:
        self.last_id = sid
        self.guard.stream_opened(self.worker.clock.now)
        stream = self.streams[sid] = H2Stream(self, sid, self.worker)
        self.worker.stats.h2_streams += 1
        return stream

    def got_body(self, sid: int, data: bytes, size: int, ended: bool) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            self.proto.consumed(None, size)
            return
        stream.body(data, size)
        if ended:
            stream.end()

    def got_trailers(self, sid: int, block: codec.Headers) -> None:
        stream = self.streams.get(sid)
        if stream is not None:
            stream.trailers = block
            stream.end()

    def got_reset(self, sid: int, remote: bool) -> None:
        stream = self.streams.pop(sid, None)
        if stream is not None:
            stream.cancelled()
        if remote and not self.guard.reset(self.worker.clock.now):
            raise ConnectionFailure(Code.ENHANCE_YOUR_CALM, self.guard.calm)

    def got_window(self, sid: int) -> None:
        if sid:
            stream = self.streams.get(sid)
            if stream is not None and stream.out:
                self.flush_stream(stream)
            return
        for stream in list(self.streams.values()):
            if stream.out:
                self.flush_stream(stream)

    def got_goaway(self) -> None:
        """The client is going away: its streams finish, no more come."""
        self.closing = True
        if not self.streams:
            self.finish()

    def got_control(self) -> None:
        if not self.guard.control_frame(self.worker.clock.now):
            raise ConnectionFailure(Code.ENHANCE_YOUR_CALM, self.guard.calm)

    # -- Carrier: what the streams ask -----------------------------------------
    def send_head(self, sid: int, block: codec.Headers, end: bool) -> None:
        """Frame a head (a flush_stream follows: it sends)."""
        self.send_encoded_head(sid, encode(block), end)

    def send_encoded_head(self, sid: int, encoded: bytes, end: bool) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        self.proto.send_encoded(sid, encoded, end)
        stream.sent_end = end

    def send_whole(self, stream: H2Stream, encoded: bytes, body: bytes) -> bool:
        """A whole response at once when the client's window takes its body
        (the common case); else only its head, and False: the body waits in
        ``stream.out``."""
        proto, sid = self.proto, stream.sid
        if sid not in self.streams:
            return True
        if len(body) > proto.window(sid):
            self.send_encoded_head(sid, encoded, False)
            return False
        proto.send_encoded(sid, encoded, not body)
        if body:
            proto.send_data(sid, body, True)
        stream.sent_end = True
        self.settle(stream)
        self._send()
        return True

    def flush_stream(self, stream: H2Stream) -> None:
        """Move what waits in ``stream.out`` into DATA frames as far as the
        windows and the output buffer allow; end the stream once all went
        (END_STREAM on the last DATA frame when it can be)."""
        proto, sid, out = self.proto, stream.sid, stream.out
        if stream.closed or sid not in self.streams:
            self._send()
            return
        while out:
            if self.stream.pending + len(proto.out) >= self.limit:
                self.output_full = True       # _write goes on once the bytes are out
                break
            room = proto.window(sid)
            if room <= 0:
                break
            data = out[0]
            if len(data) > room:
                out[0], data = data[room:], data[:room]
            else:
                out.pop(0)
            last = not out and stream.ended and stream.end_block is None
            proto.send_data(sid, data, last)
            stream.sent_end = last
            stream.taken(len(data))
        if not out and stream.ended and not stream.sent_end:
            stream.sent_end = True
            if stream.end_block is not None:
                proto.send_headers(sid, stream.end_block, True)
            else:
                proto.send_data(sid, b"", True)
        self.settle(stream)
        self._send()

    def settle(self, stream: H2Stream) -> None:
        """Forget a stream once its response has ended and its exchange is
        done; a client still sending its request is told to stop (RFC 9113
        section 8.1: NO_ERROR)."""
        if not stream.sent_end or stream.active is not None:
            return
        if self.streams.pop(stream.sid, None) is not None and self.proto.remote_open(stream.sid):
            self.proto.reset(stream.sid, Code.NO_ERROR)
        if self.closing and not self.streams:
            self.finish()

    def consumed(self, stream: H2Stream) -> None:
        size, stream.unacked = stream.unacked, 0
        if size:
            self.proto.consumed(stream.sid, size)
            self._send()

    def reset(self, sid: int) -> None:
        """The response broke off midway (the backend failed)."""
        self.proto.reset(sid, Code.INTERNAL_ERROR)
        self._send()

    def stream_done(self, stream: H2Stream) -> None:
        self.streams.pop(stream.sid, None)
        if self.closing and not self.streams:
            self.finish()

    def addresses(self) -> Addresses:
        return self.who.addresses(self.stream.shared_socket())

    def allow_request(self) -> bool:
        per_client = self.worker.per_client
        return per_client is None or per_client.allow_request(self)

    # -- output ----------------------------------------------------------
    def _send(self) -> None:
        """Write what the protocol has for the client at the end of this loop
        iteration: answers to several streams that arrive together (from
        different backends) leave in one write."""
        if self.flushing or not self.proto.out:
            return
        self.flushing = True
        self.worker.loop.call_soon(self._write)

    def _write(self) -> None:
        self.flushing = False
        if self.closed or not self.proto.out:
            return
        self.stream.write(self.proto.take())
        if self.stream.pending >= self.limit:
            # The client is not reading: read no more from it either.
            self.stream.stop_reading()
            self.stream.when_drained(self._drained)
        elif self.output_full:
            self.output_full = False
            self.got_window(0)

    def _drained(self) -> None:
        if self.closed or self.lingering:
            return
        self.stream.start_reading()
        self.got_window(0)

    # -- ends ------------------------------------------------------------
    def on_eof(self) -> None:
        self.closing = True
        if self.lingering or not self.streams:
            self.close()

    def on_error(self, exc: OSError) -> None:
        self.close()

    def check(self, now: float) -> None:
        """The worker's sweep: each stream's deadline, then the connection's
        (the preface, idleness without a stream, or the end of lingering)."""
        for stream in list(self.streams.values()):
            stream.check(now)
        if self.streams or now < self.deadline or self.closed:
            return
        if self.lingering:
            self.close()
        else:
            self.goaway(Code.NO_ERROR)
            self.finish()

    def shutdown(self) -> None:
        """Worker stopping: GOAWAY with the last stream taken; those finish,
        then the connection closes."""
        self.goaway(Code.NO_ERROR)
        if not self.streams:
            self.finish()

    def goaway(self, code: Code) -> None:
        if self.goaway_sent or self.closed:
            return
        self.goaway_sent = self.closing = True
        self.proto.goaway(self.last_id, code)
        self._send()

    def _fail(self, reason: str, code: Code) -> None:
        """Give up on the client: GOAWAY with ``code``, every stream dropped."""
        log.info("http2 connection closed", client=self.who.peer.decode(), reason=reason,
                 code=code.name)
        self.worker.stats.h2_calmed += 1
        self.goaway(code)
        self.finish()

    def finish(self) -> None:
        """Send what is queued, half-close, and drop what the client still
        sends for a moment before closing: closing with unread input makes
        the kernel send RST, which can destroy the last frames (GOAWAY among
        them) before the client reads them."""
        if self.lingering or self.closed:
            return
        self._write()
        self._drop_streams()
        self.lingering = True
        self.stream.shutdown_write()
        self.stream.start_reading()
        self.deadline = self.worker.clock.now + LINGER_SECONDS

    def _drop_streams(self) -> None:
        for stream in list(self.streams.values()):
            stream.cancelled()
        self.streams.clear()

    def abort(self) -> None:
        """The worker's grace period is over: close now."""
        self.stream.abort()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._drop_streams()
        self.stream.close()
        self.worker.forget(self)
