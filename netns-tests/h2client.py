"""A small HTTP/2 client on the h2 package, for the tests that need to write
frames no well-behaved client would (the attacks in test_http2.py) or to
watch GOAWAY and RST_STREAM. Real clients (curl, nghttp, h2load) carry the
ordinary traffic."""

from __future__ import annotations

import socket
import time

import h2.config
import h2.connection
import h2.events


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.ended = False
        self.reset: int | None = None     # RST_STREAM's error code


class H2Client:
    def __init__(self, sock: socket.socket, authority: str = "lb.test") -> None:
        self.sock = sock
        self.authority = authority.encode()
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.responses: dict[int, Response] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", body: bytes | None = None,
                end: bool = True, headers: list[tuple[bytes, bytes]] = ()) -> int:
        sid = self.conn.get_next_available_stream_id()
        block = [(b":method", method.encode()), (b":scheme", b"http"),
                 (b":authority", self.authority), (b":path", path.encode()), *headers]
        self.conn.send_headers(sid, block, end_stream=end and body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        self.responses[sid] = Response()
        self.flush()
        return sid

    def read(self, done, timeout: float = 5.0) -> bool:
        """Read until ``done(self)`` holds, the connection closes, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done(self) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            self._events(self.conn.receive_data(data))
            self.flush()
        return done(self)

    def _events(self, events) -> None:
        for event in events:
            response = self.responses.get(getattr(event, "stream_id", None) or 0)
            if isinstance(event, h2.events.ResponseReceived) and response is not None:
                response.headers = dict(event.headers)
                response.status = int(response.headers[b":status"])
            elif isinstance(event, h2.events.DataReceived) and response is not None:
                response.body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                    event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and response is not None:
                response.ended = True
            elif isinstance(event, h2.events.StreamReset) and response is not None:
                response.reset = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event

    def finished(self, *sids: int) -> bool:
        return all(self.responses[s].ended or self.responses[s].reset is not None for s in sids)

    def close(self) -> None:
        self.sock.close()


def raw_frames(sock: socket.socket, timeout: float = 5.0) -> list[tuple[int, int, int, bytes]]:
    """Frames read off a socket until it closes or is quiet for ``timeout``:
    (type, flags, stream id, payload), for clients that write frames by hand."""
    data = b""
    sock.settimeout(timeout)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    frames, at = [], 0
    while len(data) - at >= 9:
        length = int.from_bytes(data[at:at + 3], "big")
        frames.append((data[at + 3], data[at + 4],
                       int.from_bytes(data[at + 5:at + 9], "big") & 0x7FFFFFFF,
                       data[at + 9:at + 9 + length]))
        at += 9 + length
    return frames
