"""One HTTP/2 client connection: the h2 package's state machine on a Stream,
its streams (stream.py), flow control toward the client, and the bounds a
public listener needs (docs/http2.md):

- SETTINGS: ``http2.max_concurrent_streams`` (a stream over it is refused),
  the windows, the frame size, the HPACK table, and a header list of at most
  ``limits.header_bytes`` decoded; a header block (HEADERS and its
  CONTINUATION frames) is also bounded by ``limits.header_bytes`` as it
  arrives, before any of it is decoded;
- rapid reset and control-frame floods (guard.py): GOAWAY ENHANCE_YOUR_CALM;
- output: while ``limits.buffer`` waits for the client to read, the
  connection stops reading it (so PING and SETTINGS acknowledgements cannot
  pile up) and moves no more response data into frames;
- the connection's own deadlines: the preface within ``timeouts.header``,
  and ``timeouts.idle`` without a stream;
- shutdown and reload: GOAWAY with the last stream id taken; those streams
  finish, later ones are refused (the client may retry them anywhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import structlog
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from ..http import codec
from ..http.client import LINGER_SECONDS
from ..http.identity import ClientIdentity
from ..io.stream import Stream
from ..proxyproto.header import Addresses
from .guard import Guard
from .stream import H2Stream

if TYPE_CHECKING:
    from ..worker_view import WorkerView

log = structlog.get_logger("l7lb.http2")

_CONTROL = (h2.events.PingReceived, h2.events.RemoteSettingsChanged, h2.events.WindowUpdated,
            h2.events.PriorityUpdated)


class Http2Connection:
    __slots__ = ("worker", "stream", "who", "h2", "streams", "guard", "limit", "closed",
                 "closing", "last_id", "goaway_sent", "deadline", "lingering", "corked",
                 "__weakref__")

    def __init__(self, worker: "WorkerView", stream: Stream, who: ClientIdentity) -> None:
        self.worker, self.stream, self.who = worker, stream, who
        settings = worker.config.balancer.http2
        limits = worker.config.limits
        self.limit = limits.buffer
        self.h2 = _protocol(worker)
        self.streams: dict[int, H2Stream] = {}
        self.guard = Guard(settings.max_resets_per_second, settings.max_control_frames_per_second)
        self.closed = False
        self.closing = False          # GOAWAY sent or received: no new stream
        self.last_id = 0              # the highest stream id taken
        self.goaway_sent = False
        self.lingering = False        # half-closed: what the client still sends is dropped
        self.corked = False           # reading a batch of frames: one write at its end
        # The connection's own deadline: the preface, then idleness without streams.
        self.deadline = worker.clock.now + worker.config.timeouts.header
        stream.own(self)
        self.h2.initiate_connection()
        window = settings.connection_window_size - 65535
        if window > 0:
            self.h2.increment_flow_control_window(window)
        self._send()
        worker.track(self)

    # -- input -----------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        if self.lingering or self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued GOAWAY with the error's code.
            self._fail(f"HTTP/2 protocol error: {exc}", None)
            return
        if self._header_block_size() > self.worker.config.limits.header_bytes:
            self._fail("header block larger than limits.header_bytes",
                       ErrorCodes.ENHANCE_YOUR_CALM)
            return
        now = self.worker.clock.now
        self.deadline = now + self.worker.config.timeouts.idle
        guard = self.guard
        self.corked = True
        try:
            for event in events:
                self._event(event, now)
                if guard.calm:
                    break
        finally:
            self.corked = False
        if guard.calm:
            self._fail(guard.calm, ErrorCodes.ENHANCE_YOUR_CALM)
            return
        self._send()

    def _event(self, event: h2.events.Event, now: float) -> None:
        events = h2.events
        if isinstance(event, events.DataReceived):
            self._data(event)
        elif isinstance(event, events.RequestReceived):
            self._request(event)
        elif isinstance(event, events.StreamEnded):
            self._ended(event)
        elif isinstance(event, events.StreamReset):
            self._reset(event)
        elif isinstance(event, events.TrailersReceived):
            self._trailers(event)
        elif isinstance(event, events.ConnectionTerminated):
            self._terminated(event)
        elif isinstance(event, _CONTROL):
            self.guard.control_frame(now)

    def _header_block_size(self) -> int:
        """Bytes of a header block still arriving (HEADERS, then CONTINUATION
        frames the h2 package holds until the block ends)."""
        held = getattr(self.h2.incoming_buffer, "_headers_buffer", None)
        return sum(len(frame.data) for frame in held) if held else 0

    def _request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        assert sid is not None and event.headers is not None
        if self.closing:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        self.last_id = sid
        stream = self.streams[sid] = H2Stream(self, sid, self.worker)
        self.worker.stats.h2_streams += 1
        stream.begin(_pairs(event.headers), event.stream_ended is not None)

    def _data(self, event: h2.events.DataReceived) -> None:
        sid, data = event.stream_id, event.data or b""
        assert sid is not None
        stream = self.streams.get(sid)
        size = event.flow_controlled_length or 0
        if stream is None:
            if size:
                self.h2.acknowledge_received_data(size, sid)
            return
        if not data and event.stream_ended is None and not self.guard.control_frame(
                self.worker.clock.now):
            return            # empty DATA frames count as control frames
        stream.body(data, size)

    def _trailers(self, event: h2.events.TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id or 0)
        if stream is not None and event.headers is not None:
            stream.trailers = [pair for pair in _pairs(event.headers) if pair[0][:1] != b":"]

    def _ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id or 0)
        if stream is not None:
            stream.end()

    def _reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.pop(event.stream_id or 0, None)
        if event.remote_reset:
            self.guard.reset(self.worker.clock.now)     # on_data acts on the verdict
        if stream is not None:
            stream.cancelled()

    def _terminated(self, event: h2.events.ConnectionTerminated) -> None:
        """The client sent GOAWAY: its streams finish, no more come."""
        self.closing = True
        if not self.streams:
            self.finish()

    # -- Carrier: what the streams ask -----------------------------------------
    def send_head(self, sid: int, block: codec.Headers, end: bool) -> None:
        """Frame a head (a flush_stream follows: it sends)."""
        stream = self.streams.get(sid)
        if stream is None:
            return
        try:
            self.h2.send_headers(sid, block, end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            log.warning("response head refused", client=self.who.peer.decode(), reason=str(exc))
            self.reset(sid, False)
            return
        stream.sent_end = end

    def flush_stream(self, stream: H2Stream) -> None:
        """Move what waits in ``stream.out`` into DATA frames as far as the
        windows and the output buffer allow; end the stream once all went."""
        if stream.closed or stream.sid not in self.streams:
            self._send()
            return
        h2c, sid = self.h2, stream.sid
        while stream.out and self.stream.pending < self.limit:
            room = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size)
            if room <= 0:
                break
            data = stream.out[0]
            if len(data) > room:
                stream.out[0], data = data[room:], data[:room]
            else:
                stream.out.pop(0)
            h2c.send_data(sid, data)
            stream.taken(len(data))
        if not stream.out and stream.ended and not stream.sent_end:
            stream.sent_end = True
            if stream.end_block is not None:
                h2c.send_headers(sid, stream.end_block, end_stream=True)
            else:
                h2c.end_stream(sid)
        self.settle(stream)
        self._send()

    def settle(self, stream: H2Stream) -> None:
        """Forget a stream once its response has ended and its exchange is
        done; a client still sending its request is told to stop (RFC 9113
        section 8.1: NO_ERROR)."""
        if not stream.sent_end or stream.active is not None:
            return
        if self.streams.pop(stream.sid, None) is not None and not stream.closed:
            h2_stream = self.h2.streams.get(stream.sid)
            if h2_stream is not None and not h2_stream.closed:
                self.h2.reset_stream(stream.sid, ErrorCodes.NO_ERROR)
        if self.closing and not self.streams:
            self.finish()

    def consumed(self, stream: H2Stream) -> None:
        size, stream.unacked = stream.unacked, 0
        if size and stream.sid in self.h2.streams:
            self.h2.acknowledge_received_data(size, stream.sid)
            self._send()

    def reset(self, sid: int, cancel: bool) -> None:
        try:
            self.h2.reset_stream(sid, ErrorCodes.CANCEL if cancel else ErrorCodes.INTERNAL_ERROR)
        except h2.exceptions.ProtocolError:
            pass          # closed already
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
        if self.corked:
            return
        data = self.h2.data_to_send()
        if data:
            self.stream.write(data)
            if self.stream.pending >= self.limit:
                # The client is not reading: read no more from it either.
                self.stream.stop_reading()
                self.stream.when_drained(self._drained)

    def _drained(self) -> None:
        if self.closed:
            return
        self.stream.start_reading()
        for stream in list(self.streams.values()):
            if stream.out:
                self.flush_stream(stream)

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
            self.goaway(ErrorCodes.NO_ERROR)
            self.finish()

    def shutdown(self) -> None:
        """Worker stopping or reloading: GOAWAY with the last stream taken;
        those finish, then the connection closes."""
        self.goaway(ErrorCodes.NO_ERROR)
        if not self.streams:
            self.finish()

    def goaway(self, code: ErrorCodes) -> None:
        """GOAWAY written by hand: the h2 package would refuse to send
        anything after its own, and the streams taken must still finish."""
        if self.goaway_sent or self.closed:
            return
        self.goaway_sent = self.closing = True
        self._send()
        frame = GoAwayFrame(0)
        frame.last_stream_id, frame.error_code = self.last_id, code
        self.stream.write(frame.serialize())

    def _fail(self, reason: str, code: ErrorCodes | None) -> None:
        """Give up on the client: GOAWAY with ``code`` (None: the h2 package
        queued one), every stream dropped."""
        log.info("http2 connection closed", client=self.who.peer.decode(), reason=reason)
        self.worker.stats.h2_calmed += 1
        if code is not None:
            self.goaway(code)
        self.finish()

    def finish(self) -> None:
        """Send what is queued, half-close, and drop what the client still
        sends for a moment before closing: closing with unread input makes
        the kernel send RST, which can destroy the last frames (GOAWAY among
        them) before the client reads them."""
        if self.lingering or self.closed:
            return
        self._send()
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


def _protocol(worker: "WorkerView") -> h2.connection.H2Connection:
    """An h2 server connection with our SETTINGS, and its decoder held to them
    from the start (the h2 package applies them only once acknowledged)."""
    settings = worker.config.balancer.http2
    header_bytes = worker.config.limits.header_bytes
    # Response heads are built here from what llhttp let through (tokens for
    # names, no CR/LF in values), lowercased, connection fields dropped: the
    # h2 package need not check and normalise them again.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_outbound_headers=False,
        normalize_outbound_headers=False))
    codes = h2.settings.SettingCodes
    conn.local_settings = h2.settings.Settings(client=False, initial_values={
        codes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
        codes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
        codes.MAX_FRAME_SIZE: settings.max_frame_size,
        codes.HEADER_TABLE_SIZE: settings.header_table_size,
        codes.MAX_HEADER_LIST_SIZE: header_bytes,
    })
    conn.decoder.max_header_list_size = header_bytes
    conn.decoder.max_allowed_table_size = settings.header_table_size
    conn.max_inbound_frame_size = settings.max_frame_size
    conn.incoming_buffer.max_frame_size = settings.max_frame_size
    return conn


def _pairs(headers: Iterable[tuple[bytes | str, bytes | str]]) -> codec.Headers:
    """A header block as the h2 package gives it (bytes: header_encoding is None)."""
    return cast(codec.Headers, list(headers))
