"""A request's body on its way to the backend, without I/O: how it is framed
there (as the client sent it, or re-chunked), how much of it is still to
come, what it came to, the bytes held while no connection takes them, and,
for a body that may be sent again (a gRPC call's, up to ``keep`` bytes), all
of it as sent."""

from __future__ import annotations

from . import codec
from .codec import CHUNKED, LENGTH, NONE
from .request import SPLICE_MIN


class RequestBody:
    __slots__ = ("framing", "remaining", "bytes_in", "held", "held_size", "kept", "keep")

    def __init__(self, framing: int = NONE, length: int = 0, keep: int = 0) -> None:
        self.framing = framing            # as the client framed it
        self.remaining = length           # bytes still to come (Content-Length)
        self.bytes_in = 0                 # read from the client so far
        self.held: list[bytes] = []       # bytes waiting for a connection
        self.held_size = 0
        self.kept: list[bytes] | None = [] if keep else None   # all of it, while <= keep
        self.keep = keep

    def framed(self, data: bytes, limit: int | None) -> bytes:
        """``data`` from the client, counted, as it goes upstream. ``limit``:
        limits.body_bytes, checked here for a chunked body (a stated length
        was checked with the head)."""
        self.bytes_in += len(data)
        if self.framing == CHUNKED:
            if limit is not None and self.bytes_in > limit:
                raise codec.Reject(413, f"request body larger than limits.body_bytes ({limit})")
            data = codec.chunk(data)
        else:
            self.remaining -= len(data)
        if self.kept is not None:
            self._keep(data)
        return data

    def _keep(self, data: bytes) -> None:
        kept = self.kept
        assert kept is not None
        kept.append(data)
        self.keep -= len(data)
        if self.keep < 0:
            self.kept = None            # too large to send again

    def last(self, trailers: codec.Headers) -> bytes:
        """What ends the body upstream: the last chunk and its trailers."""
        last = codec.last_chunk(trailers) if self.framing == CHUNKED else b""
        if last and self.kept is not None:
            self._keep(last)
        return last

    def rewind(self) -> None:
        """To another host: the whole body is held again, if it was kept."""
        if self.kept is not None:
            self.held = list(self.kept)
            self.held_size = sum(map(len, self.held))

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
