"""An HTTP/2 stream's request on the HTTP/1.1 fast lane (http/lane_request.py).

A stream whose request came whole with its HEADERS (no body) is written as
the HTTP/1.1 request it stands for and offered to the lane, which judges it
exactly as it judges a client's bytes: the same checks, the same routes,
choice and pooled connection, the same access line, no Exchange. The lane's
answer, a whole simple HTTP/1.1 response, becomes one HEADERS frame and the
DATA the client's window takes. Whatever the lane does not take, or hands
over midway, goes on as an Exchange on the stream (stream.py). No I/O.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Protocol

from ..http import codec
from ..http.codec import Reject
from ..http.exchange import Exchange
from ..http.identity import ClientIdentity
from ..http.lane_request import LaneRequest
from ..http.timer import Timer
from ..io.stream import Stream
from .hpack_codec import encode

if TYPE_CHECKING:
    from ..logs.access_lines import AccessLog
    from ..worker_view import WorkerView

_HEADS_KEPT = 512           # response heads whose header block is remembered


class LaneOwner(Protocol):
    """The stream a lane request belongs to (stream.H2Stream)."""
    stream: Stream
    who: ClientIdentity
    access: "AccessLog | None"
    timer: Timer

    def refuse(self, status: int, detail: str) -> None: ...
    def adopt(self, method: bytes, target: bytes, started: float) -> Exchange: ...
    def lane_answer(self, encoded: bytes, body: bytes) -> None: ...


class StreamLane:
    """The lane's client for one stream (http.lane_request.LaneClient)."""
    __slots__ = ("owner", "who", "access", "timer", "closing", "request")

    def __init__(self, owner: LaneOwner, worker: "WorkerView") -> None:
        self.owner = owner
        self.who, self.access, self.timer = owner.who, owner.access, owner.timer
        self.closing = False
        self.request = LaneRequest(self, worker)

    @property
    def stream(self) -> "StreamLane":
        return self          # the lane writes its answer here

    def carry(self, block: codec.Headers) -> bool:
        """Offer the request (its header block, no body) to the lane; False:
        the lane did not take it, and nothing of it has been acted on."""
        known = _requests.get(id(block))
        if known is not None and known[0] is block:
            data = known[1]
        else:
            data = as_http1(block)
            if len(_requests) >= _HEADS_KEPT:
                _requests.clear()
            _requests[id(block)] = (block, data)
        return data is not None and self.request.carry(data)

    @property
    def under_way(self) -> bool:
        return self.request.conn is not None

    def hand_over(self) -> None:
        if self.request.conn is not None:
            self.request.hand_over()

    # -- LaneClient ----------------------------------------------------------
    def write(self, data: bytes) -> None:
        """The lane's answer: one whole simple HTTP/1.1 response."""
        end = data.find(b"\r\n\r\n")
        self.owner.lane_answer(encoded_response(data[:end]), data[end + 4:])

    def shared_socket(self) -> socket.socket:
        return self.owner.stream.shared_socket()

    def reject_now(self, reject: Reject) -> None:
        self.owner.refuse(reject.status, reject.detail)

    def shutdown(self) -> None:
        """The worker is stopping: the connection sends GOAWAY itself."""

    def adopt(self, method: bytes, target: bytes, started: float) -> Exchange:
        return self.owner.adopt(method, target, started)


def as_http1(block: codec.Headers) -> bytes | None:
    """The HTTP/1.1 request a bodiless h2 request stands for, written as the
    codec writes heads (Host first); None when it has no :authority or has a
    Host or Cookie field (the general path joins and checks those)."""
    method = target = authority = b""
    lines: list[bytes] = []
    for name, value in block:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                target = value
            elif name == b":authority":
                authority = value
        elif name == b"host" or name == b"cookie":
            return None
        else:
            lines += (name, b": ", value, b"\r\n")
    if not authority or not target:
        return None
    return b"".join([method, b" ", target, b" HTTP/1.1\r\nHost: ", authority, b"\r\n",
                     *lines, b"\r\n"])


# The HTTP/1.1 requests of header blocks the protocol decoded once and hands
# over again for each repeat (server.ServerConnection remembers them): by the
# block's identity, the block kept with it so that the identity stays its own.
_requests: dict[int, tuple[codec.Headers, bytes | None]] = {}
_encoded: dict[bytes, bytes] = {}


def encoded_response(head: bytes) -> bytes:
    """The h2 header block, HPACK-encoded, of a simple response head (the
    lane has checked it: a status line, then "Name: value" lines),
    remembered by its bytes."""
    encoded = _encoded.get(head)
    if encoded is None:
        lines = head.split(b"\r\n")
        block = [(b":status", lines[0][9:12])]
        for line in lines[1:]:
            name, _, value = line.partition(b": ")
            block.append((name.lower(), value))
        if len(_encoded) >= _HEADS_KEPT:
            _encoded.clear()
        encoded = _encoded[head] = encode(block)
    return encoded
