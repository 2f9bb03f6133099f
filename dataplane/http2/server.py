"""The server side of an HTTP/2 connection, without I/O (RFC 9113): bytes in,
calls to a ``Handler`` and bytes to send out.

It keeps what the protocol needs and nothing else: the preface and SETTINGS
exchange, stream states (idle, open, half-closed, closed, with client stream
ids rising), flow control both ways, header blocks across CONTINUATION frames
(bounded as they arrive), HPACK (hpack_codec.py), the checks a request's
fields must pass (fields.py), PING and SETTINGS acknowledgements.
A connection error raises ``ConnectionFailure`` with the GOAWAY code;
a stream error resets the stream here and tells the handler. Blocks decoded
once are remembered while the client's HPACK table stays the same, so a
client that repeats a request (indexed fields only) costs one lookup.
Where it differs from the h2 package (tests/test_http2_server.py compares
the two): a stream over max_concurrent_streams is refused (REFUSED_STREAM)
and a body that contradicts its content-length resets its stream, where h2
ends the connection; a header list over the limit is answered 431; a first
frame other than SETTINGS ends the connection (RFC 9113 section 3.4).
"""

from __future__ import annotations

from typing import Protocol

from . import fields, flow, frames
from .frames import Code, ConnectionFailure
from .header_blocks import Block, HeaderBlocks
from .hpack_codec import TABLE_OFF, Headers, encode

__all__ = ["ConnectionFailure", "Handler", "ServerConnection"]


class Handler(Protocol):
    def got_request(self, sid: int, block: Headers, ended: bool) -> None: ...
    def got_too_large(self, sid: int, ended: bool) -> None: ...   # its fields over the limit
    def got_body(self, sid: int, data: bytes, size: int, ended: bool) -> None: ...
    def got_trailers(self, sid: int, block: Headers) -> None: ...   # they end the request
    def got_reset(self, sid: int, remote: bool) -> None: ...    # by the client, or for an error
    def got_window(self, sid: int) -> None: ...     # more may be sent (0: on every stream)
    def got_goaway(self) -> None: ...
    def got_control(self) -> None: ...              # a frame that carried no request


class Stream:
    __slots__ = ("send_window", "recv_window", "credit", "remote_open", "local_open",
                 "length", "received")

    def __init__(self, send_window: int, recv_window: int, ended: bool,
                 length: int | None) -> None:
        self.send_window, self.recv_window = send_window, recv_window
        self.credit = 0                  # body bytes consumed, not yet granted again
        self.remote_open = not ended     # the client may still send
        self.local_open = True           # we may still send
        self.length, self.received = length, 0


class ServerConnection:
    __slots__ = ("handler", "max_streams", "stream_window", "connection_window", "max_frame",
                 "blocks", "streams", "highest", "send_window", "recv_window", "credit",
                 "peer_window", "peer_frame", "pending", "preface", "settled", "encoded_once",
                 "out")

    def __init__(self, handler: Handler, *, max_streams: int, stream_window: int,
                 connection_window: int, max_frame: int, table_size: int,
                 header_bytes: int) -> None:
        self.handler = handler
        self.max_streams, self.stream_window = max_streams, stream_window
        self.connection_window, self.max_frame = connection_window, max_frame
        self.blocks = HeaderBlocks(table_size, header_bytes)
        self.streams: dict[int, Stream] = {}
        self.highest = 0                 # the highest client stream id seen
        self.send_window = frames.DEFAULT_WINDOW       # the connection's, toward the client
        self.recv_window = connection_window
        self.credit = 0
        self.peer_window = frames.DEFAULT_WINDOW       # the client's INITIAL_WINDOW_SIZE
        self.peer_frame = frames.DEFAULT_FRAME         # the client's MAX_FRAME_SIZE
        self.pending = b""
        self.preface = True              # the client's preface not yet read whole
        self.settled = False             # the client's first SETTINGS read
        self.encoded_once = False
        out = [frames.settings({
            frames.MAX_CONCURRENT_STREAMS: max_streams, frames.INITIAL_WINDOW_SIZE: stream_window,
            frames.MAX_FRAME_SIZE: max_frame, frames.HEADER_TABLE_SIZE: table_size,
            frames.MAX_HEADER_LIST_SIZE: header_bytes, frames.ENABLE_PUSH: 0})]
        if connection_window > frames.DEFAULT_WINDOW:
            out.append(frames.window_update(0, connection_window - frames.DEFAULT_WINDOW))
        self.out = bytearray(b"".join(out))

    # -- input -----------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Read ``data``; raises ConnectionFailure."""
        data = self.pending + data if self.pending else data
        at, end = 0, len(data)
        if self.preface:
            if end < len(frames.PREFACE):
                if not frames.PREFACE.startswith(data):
                    raise ConnectionFailure(Code.PROTOCOL_ERROR, "not the HTTP/2 preface")
                self.pending = data
                return
            if not data.startswith(frames.PREFACE):
                raise ConnectionFailure(Code.PROTOCOL_ERROR, "not the HTTP/2 preface")
            self.preface = False
            at = len(frames.PREFACE)
        self.pending = data[frames.each(data, at, self.max_frame, self._frame):]

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if not self.settled:
            if kind != frames.SETTINGS or flags & frames.ACK:
                raise ConnectionFailure(Code.PROTOCOL_ERROR, "the first frame is not SETTINGS")
            self.settled = True
        if self.blocks.continuing is not None and kind != frames.CONTINUATION:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "a header block was interrupted")
        if kind == frames.DATA:
            self._data(flags, sid, payload)
        elif kind == frames.HEADERS:
            if not sid or not sid & 1:
                raise ConnectionFailure(Code.PROTOCOL_ERROR, f"HEADERS on stream {sid}")
            self._block(self.blocks.headers(flags, sid, payload))
        elif kind == frames.WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif kind == frames.RST_STREAM:
            self._rst_stream(sid, payload)
        elif kind == frames.SETTINGS:
            self._settings(flags, sid, payload)
        elif kind == frames.PING:
            self._ping(flags, sid, payload)
        elif kind == frames.CONTINUATION:
            self._block(self.blocks.continuation(flags, sid, payload))
        elif kind == frames.PRIORITY:
            self._priority(sid, payload)
        elif kind == frames.GOAWAY:
            if sid:
                raise ConnectionFailure(Code.PROTOCOL_ERROR, "GOAWAY on a stream")
            self.handler.got_goaway()
        elif kind == frames.PUSH_PROMISE:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # Other types are extensions: ignored (section 5.5).

    def _data(self, flags: int, sid: int, payload: bytes) -> None:
        if not sid:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self.recv_window -= size
        if self.recv_window < 0:
            raise ConnectionFailure(Code.FLOW_CONTROL_ERROR, "DATA over the connection window")
        stream = self.streams.get(sid)
        if stream is None or not stream.remote_open:
            self._idle_check(sid)
            self.consumed(None, size)
            if stream is not None:
                self._stream_error(sid, Code.STREAM_CLOSED)
            return
        stream.recv_window -= size
        if stream.recv_window < 0:
            self._stream_error(sid, Code.FLOW_CONTROL_ERROR)
            return
        data = frames.unpad(payload) if flags & frames.PADDED else payload
        if not data and not flags & frames.END_STREAM:
            self.handler.got_control()
        ended = bool(flags & frames.END_STREAM)
        stream.received += len(data)
        if stream.length is not None and (stream.received > stream.length or
                                          ended and stream.received != stream.length):
            self._stream_error(sid, Code.PROTOCOL_ERROR)     # content-length is wrong
            return
        if ended:
            stream.remote_open = False
            self._forget_if_closed(sid, stream)
        self.handler.got_body(sid, data, size, ended)

    def _block(self, block: Block | None) -> None:
        """A whole header block: a new request, or trailers."""
        if block is None:
            return                      # CONTINUATION frames are to follow
        sid, ended = block.sid, block.ended
        if sid <= self.highest:
            headers = self.blocks.decode(block.data)
            stream = self.streams.get(sid)
            if stream is None or not stream.remote_open:
                self._stream_error(sid, Code.STREAM_CLOSED)
            elif not ended:
                self._stream_error(sid, Code.PROTOCOL_ERROR)    # trailers end the stream
            else:
                self._trailers(sid, stream, headers)
            return
        self.highest = sid
        try:
            found = self.blocks.request(block.data)
        except fields.Malformed:
            self._refuse(sid, Code.PROTOCOL_ERROR)
            return
        if block.self_dependent:
            self._refuse(sid, Code.PROTOCOL_ERROR)
        elif found is None:             # over limits.header_bytes decoded: answered 431
            self._open(sid, ended, None)
            self.handler.got_too_large(sid, ended)
        elif len(self.streams) >= self.max_streams:
            self._refuse(sid, Code.REFUSED_STREAM)
        elif ended and found[1]:
            self._refuse(sid, Code.PROTOCOL_ERROR)       # content-length but no body
        else:
            self._open(sid, ended, found[1])
            self.handler.got_request(sid, found[0], ended)

    def _open(self, sid: int, ended: bool, length: int | None) -> None:
        self.streams[sid] = Stream(self.peer_window, self.stream_window, ended, length)

    def _trailers(self, sid: int, stream: Stream, headers: Headers) -> None:
        try:
            fields.trailers(headers)
        except fields.Malformed:
            self._stream_error(sid, Code.PROTOCOL_ERROR)
            return
        if stream.length is not None and stream.received != stream.length:
            self._stream_error(sid, Code.PROTOCOL_ERROR)
            return
        stream.remote_open = False
        self._forget_if_closed(sid, stream)
        self.handler.got_trailers(sid, headers)

    def _window_update(self, sid: int, payload: bytes) -> None:
        increment = frames.window_increment(sid, payload)
        self.handler.got_control()
        if not sid:
            flow.widen(self, increment)
            self.handler.got_window(0)
            return
        stream = self.streams.get(sid)
        if stream is None:
            self._idle_check(sid)
            return
        if not increment:
            self._stream_error(sid, Code.PROTOCOL_ERROR)
            return
        stream.send_window += increment
        if stream.send_window > frames.MAX_WINDOW:
            self._stream_error(sid, Code.FLOW_CONTROL_ERROR)
            return
        self.handler.got_window(sid)

    def _rst_stream(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionFailure(Code.FRAME_SIZE_ERROR, "RST_STREAM of the wrong size")
        if not sid:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        self._idle_check(sid)
        if self.streams.pop(sid, None) is not None:
            self.handler.got_reset(sid, True)

    def _settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "SETTINGS on a stream")
        self.handler.got_control()
        if flags & frames.ACK:
            if payload:
                raise ConnectionFailure(Code.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            self.blocks.settings_acknowledged()
            return
        # HEADER_TABLE_SIZE: our encoder never uses the table. The rest are advisory.
        for key, value in frames.read_settings(payload):
            if key == frames.INITIAL_WINDOW_SIZE:
                flow.initial_window(self, self.streams, value)
                self.handler.got_window(0)
            elif key == frames.MAX_FRAME_SIZE:
                self.peer_frame = value
        self.out += frames.frame(frames.SETTINGS, frames.ACK, 0)

    def _ping(self, flags: int, sid: int, payload: bytes) -> None:
        self.out += frames.ping_answer(flags, sid, payload)
        self.handler.got_control()

    def _priority(self, sid: int, payload: bytes) -> None:
        if not sid:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "PRIORITY on stream 0")
        self.handler.got_control()
        if len(payload) != 5:
            self._stream_error(sid, Code.FRAME_SIZE_ERROR)

    def _idle_check(self, sid: int) -> None:
        """A frame that needs a stream opened already (section 5.1: idle)."""
        if sid > self.highest:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, f"frame on idle stream {sid}")

    def _stream_error(self, sid: int, code: Code) -> None:
        self.out += frames.rst_stream(sid, code)
        if self.streams.pop(sid, None) is not None:
            self.handler.got_reset(sid, False)

    def _refuse(self, sid: int, code: Code) -> None:
        """A stream never opened for the handler."""
        self.out += frames.rst_stream(sid, code)

    def _forget_if_closed(self, sid: int, stream: Stream) -> None:
        if not stream.local_open and not stream.remote_open:
            self.streams.pop(sid, None)

    # -- output ----------------------------------------------------------
    def window(self, sid: int) -> int:
        """Bytes of DATA the client takes now on ``sid`` (0 if not open)."""
        return flow.room(self, self.streams.get(sid))

    def send_headers(self, sid: int, block: Headers, end: bool) -> None:
        self.send_encoded(sid, encode(block), end)

    def send_encoded(self, sid: int, encoded: bytes, end: bool) -> None:
        """A header block encoded already (hpack_codec.encode)."""
        stream = self.streams.get(sid)
        if stream is None or not stream.local_open:
            return
        if not self.encoded_once:
            encoded = TABLE_OFF + encoded
            self.encoded_once = True
        self.out += frames.headers(sid, encoded, end, self.peer_frame)
        if end:
            flow.end_local(self.streams, sid, stream)

    def send_data(self, sid: int, data: bytes, end: bool) -> None:
        """``data`` fits window(sid)."""
        flow.send(self, self.streams, sid, data, end)

    def remote_open(self, sid: int) -> bool:
        """The client may still send on ``sid``."""
        stream = self.streams.get(sid)
        return stream is not None and stream.remote_open

    def consumed(self, sid: int | None, size: int) -> None:
        """``size`` body bytes went on: the client may send them again."""
        flow.grant(self, sid or 0, self.streams.get(sid) if sid is not None else None, size)

    def reset(self, sid: int, code: Code) -> None:
        if self.streams.pop(sid, None) is not None or sid <= self.highest:
            self.out += frames.rst_stream(sid, code)

    def goaway(self, last: int, code: Code) -> None:
        self.out += frames.goaway(last, code)

    def take(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out

