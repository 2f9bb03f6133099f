"""Flow control on one HTTP/2 connection (RFC 9113 section 6.9), the same
for our server side (server.py) and our side of a backend connection
(upstream_codec.py): how much DATA the peer takes now on a stream, charging
what we send, and granting back what the peer sent once it went on. No I/O:
frames go to the connection's ``out``."""

from __future__ import annotations

from typing import Protocol, TypeVar

from . import frames
from .frames import Code, ConnectionFailure


class StreamWindows(Protocol):
    send_window: int          # what the peer takes on this stream
    recv_window: int          # what the peer may send on it
    credit: int               # bytes it sent that went on, not yet granted again
    local_open: bool
    remote_open: bool


class Windows(Protocol):
    send_window: int          # the connection's, toward the peer
    recv_window: int
    credit: int
    stream_window: int        # our INITIAL_WINDOW_SIZE
    connection_window: int    # our connection window
    peer_frame: int           # the peer's MAX_FRAME_SIZE
    peer_window: int          # the peer's INITIAL_WINDOW_SIZE
    out: bytearray


S = TypeVar("S", bound=StreamWindows)


def room(conn: Windows, stream: StreamWindows | None) -> int:
    """Bytes of DATA the peer takes now on ``stream`` (0 if we may not send)."""
    if stream is None or not stream.local_open:
        return 0
    window = min(stream.send_window, conn.send_window)
    return window if window < conn.peer_frame else conn.peer_frame


def send(conn: Windows, streams: dict[int, S], sid: int, data: bytes,
         end: bool) -> None:
    """DATA that fits ``room``, charged to both windows (nothing once the
    stream is closed our way)."""
    stream = streams.get(sid)
    if stream is None or not stream.local_open:
        return
    size = len(data)
    stream.send_window -= size
    conn.send_window -= size
    conn.out += frames.frame(frames.DATA, frames.END_STREAM if end else 0, sid, data)
    if end:
        end_local(streams, sid, stream)


def end_local(streams: dict[int, S], sid: int, stream: S) -> None:
    """We sent END_STREAM: the stream is forgotten once the peer has too."""
    stream.local_open = False
    if not stream.remote_open:
        streams.pop(sid, None)


def widen(conn: Windows, increment: int) -> None:
    """The connection's WINDOW_UPDATE; raises ConnectionFailure on overflow."""
    conn.send_window += increment
    if conn.send_window > frames.MAX_WINDOW:
        raise ConnectionFailure(Code.FLOW_CONTROL_ERROR, "connection window overflow")


def initial_window(conn: Windows, streams: dict[int, S], value: int) -> None:
    """The peer's new INITIAL_WINDOW_SIZE changes every open stream's window
    (section 6.9.2); raises ConnectionFailure on overflow."""
    delta, conn.peer_window = value - conn.peer_window, value
    for stream in streams.values():
        stream.send_window += delta
        if stream.send_window > frames.MAX_WINDOW:
            raise ConnectionFailure(Code.FLOW_CONTROL_ERROR, "stream window overflow")


def grant(conn: Windows, sid: int, stream: StreamWindows | None, size: int) -> None:
    """``size`` bytes the peer sent went on: WINDOW_UPDATE once half a window
    is owed, for the connection and (while it may still send) the stream."""
    conn.credit += size
    if conn.credit >= conn.connection_window // 2:
        conn.out += frames.window_update(0, conn.credit)
        conn.recv_window += conn.credit
        conn.credit = 0
    if stream is not None and stream.remote_open:
        stream.credit += size
        if stream.credit >= conn.stream_window // 2:
            conn.out += frames.window_update(sid, stream.credit)
            stream.recv_window += stream.credit
            stream.credit = 0
