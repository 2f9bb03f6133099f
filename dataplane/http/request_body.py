"""A request's body on its way to the backend, without I/O: how it is framed
there (as the client sent it, or re-chunked), how much of it is still to
come, what it came to, and the bytes held while no connection takes them."""

from __future__ import annotations

from . import codec
from .codec import CHUNKED, LENGTH, NONE
from .request import SPLICE_MIN


class RequestBody:
    __slots__ = ("framing", "remaining", "bytes_in", "held", "held_size")

    def __init__(self, framing: int = NONE, length: int = 0) -> None:
        self.framing = framing            # as the client framed it
        self.remaining = length           # bytes still to come (Content-Length)
        self.bytes_in = 0                 # read from the client so far
        self.held: list[bytes] = []       # bytes waiting for a connection
        self.held_size = 0

    def framed(self, data: bytes, limit: int | None) -> bytes:
        """``data`` from the client, counted, as it goes upstream. ``limit``:
        limits.body_bytes, checked here for a chunked body (a stated length
        was checked with the head)."""
        self.bytes_in += len(data)
        if self.framing == CHUNKED:
            if limit is not None and self.bytes_in > limit:
                raise codec.Reject(413, f"request body larger than limits.body_bytes ({limit})")
            return codec.chunk(data)
        self.remaining -= len(data)
        return data

    def last(self, trailers: codec.Headers) -> bytes:
        """What ends the body upstream: the last chunk and its trailers."""
        return codec.last_chunk(trailers) if self.framing == CHUNKED else b""

    def hold(self, data: bytes) -> None:
        self.held.append(data)
        self.held_size += len(data)

    def after(self, head: bytes) -> bytes:
        """``head`` and the bytes held behind it, which are let go."""
        if not self.held:
            return head
        data = b"".join([head, *self.held])
        self.held.clear()
        self.held_size = 0
        return data

    def spliceable(self) -> bool:
        """Enough of a Content-Length body is still to come to move it in the kernel."""
        return self.framing == LENGTH and self.remaining >= SPLICE_MIN
