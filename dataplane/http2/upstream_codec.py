"""The client side of an HTTP/2 connection to a backend, without I/O (RFC
9113): requests out as frames, responses in as calls to a ``Responses``
handler.

It is the mirror of server.py, kept as small as a backend we chose to trust
allows: our stream ids (odd, rising), the backend's SETTINGS (its
MAX_CONCURRENT_STREAMS bounds how many streams we open, its windows and
frame size bound what we send), flow control both ways, response header
blocks across CONTINUATION frames (bounded by ``limits.header_bytes``),
1xx heads skipped, trailers, RST_STREAM and GOAWAY. A connection error
raises ``ConnectionFailure``; the session (upstream.py) fails its streams.
"""

from __future__ import annotations

from typing import Protocol

from . import fields, flow, frames
from .frames import Code, ConnectionFailure
from .header_blocks import Block, HeaderBlocks
from .hpack_codec import Headers, encode

_ASSUMED_STREAMS = 100      # until the backend's SETTINGS say (RFC 9113 recommends >= 100)


class Responses(Protocol):
    def got_head(self, sid: int, block: Headers, ended: bool) -> None: ...   # final (>= 200)
    def got_body(self, sid: int, data: bytes, size: int, ended: bool) -> None: ...
    def got_trailers(self, sid: int, block: Headers) -> None: ...
    def got_reset(self, sid: int, code: int) -> None: ...
    def got_window(self, sid: int) -> None: ...      # more may be sent (0: on every stream)
    def got_goaway(self, last: int) -> None: ...     # streams above ``last`` were not taken
    def got_settings(self) -> None: ...              # the handshake is complete


class Exchange:
    """One of our streams: what each side may still do, and the windows."""
    __slots__ = ("send_window", "recv_window", "credit", "local_open", "remote_open", "headed")

    def __init__(self, send_window: int, recv_window: int) -> None:
        self.send_window, self.recv_window = send_window, recv_window
        self.credit = 0
        self.local_open = self.remote_open = True
        self.headed = False              # the final response head came


class UpstreamCodec:
    __slots__ = ("handler", "stream_window", "connection_window", "blocks", "streams", "next_id",
                 "send_window", "recv_window", "credit", "peer_window", "peer_frame",
                 "peer_streams", "pending", "settled", "out")

    def __init__(self, handler: Responses, *, stream_window: int, connection_window: int,
                 header_bytes: int) -> None:
        self.handler = handler
        self.stream_window, self.connection_window = stream_window, connection_window
        # No dynamic table from the backend (HEADER_TABLE_SIZE 0, once it has
        # acknowledged): its response heads then repeat byte for byte, and a
        # repeated one is decoded once (header_blocks.py).
        self.blocks = HeaderBlocks(0, header_bytes)
        self.streams: dict[int, Exchange] = {}
        self.next_id = 1
        self.send_window = frames.DEFAULT_WINDOW
        self.recv_window = connection_window
        self.credit = 0
        self.peer_window = frames.DEFAULT_WINDOW
        self.peer_frame = frames.DEFAULT_FRAME
        self.peer_streams = _ASSUMED_STREAMS
        self.pending = b""
        self.settled = False             # the backend's first SETTINGS read
        out = [frames.PREFACE, frames.settings({
            frames.HEADER_TABLE_SIZE: 0, frames.ENABLE_PUSH: 0,
            frames.INITIAL_WINDOW_SIZE: stream_window,
            frames.MAX_HEADER_LIST_SIZE: header_bytes})]
        if connection_window > frames.DEFAULT_WINDOW:
            out.append(frames.window_update(0, connection_window - frames.DEFAULT_WINDOW))
        self.out = bytearray(b"".join(out))

    @property
    def room(self) -> int:
        """Streams we may open now."""
        return self.peer_streams - len(self.streams) if self.next_id < 2**31 else 0

    # -- output ----------------------------------------------------------
    def request(self, block: Headers, end: bool) -> int:
        """Open a stream with ``block``; its id."""
        sid, self.next_id = self.next_id, self.next_id + 2
        stream = self.streams[sid] = Exchange(self.peer_window, self.stream_window)
        self.out += frames.headers(sid, encode(block), end, self.peer_frame)
        if end:
            stream.local_open = False
        return sid

    def window(self, sid: int) -> int:
        return flow.room(self, self.streams.get(sid))

    def send_data(self, sid: int, data: bytes, end: bool) -> None:
        """``data`` fits window(sid)."""
        flow.send(self, self.streams, sid, data, end)

    def send_trailers(self, sid: int, block: Headers) -> None:
        stream = self.streams.get(sid)
        if stream is not None and stream.local_open:
            self.out += frames.headers(sid, encode(block), True, self.peer_frame)
            flow.end_local(self.streams, sid, stream)

    def consumed(self, sid: int, size: int) -> None:
        """``size`` response bytes went on: the backend may send them again."""
        flow.grant(self, sid, self.streams.get(sid), size)

    def reset(self, sid: int, code: Code) -> None:
        if self.streams.pop(sid, None) is not None:
            self.out += frames.rst_stream(sid, code)

    def goaway(self) -> None:
        self.out += frames.goaway(0, Code.NO_ERROR)

    def take(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out

    # -- input -----------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Read ``data``; raises ConnectionFailure."""
        data = self.pending + data if self.pending else data
        # (we never raise our MAX_FRAME_SIZE above the default)
        self.pending = data[frames.each(data, 0, frames.DEFAULT_FRAME, self._frame):]

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if not self.settled and (kind != frames.SETTINGS or flags & frames.ACK):
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "the first frame is not SETTINGS")
        if self.blocks.continuing is not None and kind != frames.CONTINUATION:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "a header block was interrupted")
        if kind == frames.DATA:
            self._data(flags, sid, payload)
        elif kind == frames.HEADERS:
            self._block(self.blocks.headers(flags, sid, payload))
        elif kind == frames.CONTINUATION:
            self._block(self.blocks.continuation(flags, sid, payload))
        elif kind == frames.WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif kind == frames.RST_STREAM:
            if len(payload) != 4 or not sid:
                raise ConnectionFailure(Code.PROTOCOL_ERROR, "RST_STREAM malformed")
            if self.streams.pop(sid, None) is not None:
                self.handler.got_reset(sid, frames.u32(payload))
        elif kind == frames.SETTINGS:
            self._settings(flags, sid, payload)
        elif kind == frames.PING:
            self.out += frames.ping_answer(flags, sid, payload)
        elif kind == frames.GOAWAY:
            if sid or len(payload) < 8:
                raise ConnectionFailure(Code.PROTOCOL_ERROR, "GOAWAY malformed")
            self.handler.got_goaway(frames.u32(payload) & 0x7FFFFFFF)
        elif kind == frames.PUSH_PROMISE:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "PUSH_PROMISE though push is off")
        # PRIORITY and extension frames are ignored.

    def _data(self, flags: int, sid: int, payload: bytes) -> None:
        size = len(payload)
        self.recv_window -= size
        if self.recv_window < 0:
            raise ConnectionFailure(Code.FLOW_CONTROL_ERROR, "DATA over the connection window")
        stream = self.streams.get(sid)
        if stream is None or not stream.remote_open or not stream.headed:
            self.consumed(0, size)
            if stream is not None:
                self._stream_error(sid, Code.PROTOCOL_ERROR if stream.remote_open
                                   else Code.STREAM_CLOSED)
            return
        stream.recv_window -= size
        if stream.recv_window < 0:
            self._stream_error(sid, Code.FLOW_CONTROL_ERROR)
            return
        data = frames.unpad(payload) if flags & frames.PADDED else payload
        ended = bool(flags & frames.END_STREAM)
        if ended:
            self._end_remote(sid, stream)
        self.handler.got_body(sid, data, size, ended)

    def _block(self, block: Block | None) -> None:
        if block is None:
            return                      # CONTINUATION frames are to follow
        sid = block.sid
        try:
            headers = self.blocks.response(block.data)    # always: the table must stay in step
        except fields.Malformed:
            headers = None
        stream = self.streams.get(sid)
        if stream is None or not stream.remote_open:
            if sid >= self.next_id or not sid & 1:
                raise ConnectionFailure(Code.PROTOCOL_ERROR, f"HEADERS on stream {sid}")
            return                      # a stream we reset already
        if headers is None:             # malformed, or over limits.header_bytes
            self._stream_error(sid, Code.PROTOCOL_ERROR)
            return
        if stream.headed:
            if not block.ended or headers and headers[0][0] == b":status":
                self._stream_error(sid, Code.PROTOCOL_ERROR)   # trailers end the stream
                return
            self._end_remote(sid, stream)
            self.handler.got_trailers(sid, headers)
            return
        status = headers[0][1] if headers and headers[0][0] == b":status" else b""
        if len(status) != 3 or not status.isdigit():
            self._stream_error(sid, Code.PROTOCOL_ERROR)
            return
        if status[0] == 0x31:           # 1xx: informational, not passed on
            return
        stream.headed = True
        if block.ended:
            self._end_remote(sid, stream)
        self.handler.got_head(sid, headers, block.ended)

    def _end_remote(self, sid: int, stream: Exchange) -> None:
        stream.remote_open = False
        if not stream.local_open:
            del self.streams[sid]

    def _window_update(self, sid: int, payload: bytes) -> None:
        increment = frames.window_increment(sid, payload)
        if not sid:
            flow.widen(self, increment)
            self.handler.got_window(0)
            return
        stream = self.streams.get(sid)
        if stream is not None:
            stream.send_window += increment
            self.handler.got_window(sid)

    def _settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & frames.ACK:
            self.blocks.settings_acknowledged()
            return
        for key, value in frames.read_settings(payload):
            if key == frames.INITIAL_WINDOW_SIZE:
                flow.initial_window(self, self.streams, value)
            elif key == frames.MAX_FRAME_SIZE:
                self.peer_frame = value
            elif key == frames.MAX_CONCURRENT_STREAMS:
                self.peer_streams = value
        self.out += frames.frame(frames.SETTINGS, frames.ACK, 0)
        first, self.settled = not self.settled, True
        self.handler.got_window(0)
        if first:
            self.handler.got_settings()

    def _stream_error(self, sid: int, code: Code) -> None:
        self.out += frames.rst_stream(sid, code)
        if self.streams.pop(sid, None) is not None:
            self.handler.got_reset(sid, code)
