"""A connection's header blocks as they arrive (a HEADERS frame, then
CONTINUATION frames until END_HEADERS), bounded by ``limits.header_bytes``
before any of it is decoded, then decoded with the peer's HPACK state
(hpack_codec.py). No I/O.

Blocks that changed nothing in that state are remembered by their bytes
while the state holds (``generation``): a client that repeats a request
sends the same few bytes of indexed fields, a backend told to keep no table
(upstream_codec.py) the same literals for the same response head, and they
cost one lookup.
"""

from __future__ import annotations

from typing import NamedTuple

from . import fields, frames
from .frames import Code, ConnectionFailure
from .hpack_codec import Decoder, Headers, HpackError

_REMEMBERED = 256          # header blocks remembered per connection
TOO_LARGE = None           # a request whose fields are over the limit


class Block(NamedTuple):
    sid: int
    ended: bool             # END_STREAM came with it
    data: bytes
    self_dependent: bool    # its priority names its own stream (a stream error)


class HeaderBlocks:
    __slots__ = ("decoder", "table_size", "header_bytes", "continuing", "remembered",
                 "generation")

    def __init__(self, table_size: int, header_bytes: int) -> None:
        # The protocol's default table (4096) holds until the client acknowledges ours.
        self.decoder = Decoder(max(table_size, 4096), header_bytes)
        self.table_size, self.header_bytes = table_size, header_bytes
        self.continuing: tuple[Block, list[bytes], int] | None = None
        self.remembered: dict[bytes, tuple[Headers, int | None]] = {}
        self.generation = 0

    def settings_acknowledged(self) -> None:
        self.decoder.max_table = self.table_size

    def headers(self, flags: int, sid: int, payload: bytes) -> Block | None:
        """A HEADERS frame: its whole block, or None while CONTINUATION
        frames are to follow."""
        if flags & frames.PADDED:
            payload = frames.unpad(payload)
        self_dependent = False
        if flags & frames.PRIORITY_FLAG:
            if len(payload) < 5:
                raise ConnectionFailure(Code.FRAME_SIZE_ERROR, "HEADERS priority cut short")
            self_dependent = frames.u32(payload) & 0x7FFFFFFF == sid
            payload = payload[5:]
        block = Block(sid, bool(flags & frames.END_STREAM), payload, self_dependent)
        if flags & frames.END_HEADERS:
            return block
        self._bound(len(payload))
        self.continuing = (block, [payload], len(payload))
        return None

    def continuation(self, flags: int, sid: int, payload: bytes) -> Block | None:
        held = self.continuing
        if held is None or held[0].sid != sid:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "CONTINUATION out of place")
        block, pieces, size = held
        pieces.append(payload)
        size += len(payload)
        self._bound(size)
        if not flags & frames.END_HEADERS:
            self.continuing = (block, pieces, size)
            return None
        self.continuing = None
        return block._replace(data=b"".join(pieces))

    def _bound(self, size: int) -> None:
        if size > self.header_bytes:
            raise ConnectionFailure(Code.ENHANCE_YOUR_CALM,
                                    "header block larger than limits.header_bytes")

    def request(self, data: bytes) -> tuple[Headers, int | None] | None:
        """A new request's fields and its Content-Length, or TOO_LARGE;
        raises fields.Malformed."""
        remembered = self.remembered.get(data)
        if remembered is not None and self.generation == self.decoder.generation:
            return remembered
        before = self.decoder.generation
        headers = self.decode(data)
        if self.decoder.oversized:
            return TOO_LARGE
        found = headers, fields.request(headers)
        self._remember(data, found, before)
        return found

    def response(self, data: bytes) -> Headers | None:
        """A response head's or trailers' fields (from a backend), or
        TOO_LARGE; raises fields.Malformed."""
        remembered = self.remembered.get(data)
        if remembered is not None and self.generation == self.decoder.generation:
            return remembered[0]
        before = self.decoder.generation
        headers = self.decode(data)
        if self.decoder.oversized:
            return TOO_LARGE
        fields.response(headers)
        self._remember(data, (headers, None), before)
        return headers

    def _remember(self, data: bytes, found: tuple[Headers, int | None], before: int) -> None:
        if self.decoder.generation == before:      # decoding it again changes nothing
            if self.generation != before:
                self.remembered.clear()            # the table changed since they were kept
                self.generation = before
            if len(self.remembered) < _REMEMBERED:
                self.remembered[data] = found

    def decode(self, data: bytes) -> Headers:
        """Decoded, in step with the client's table (every block must be)."""
        try:
            return self.decoder.decode(data)
        except HpackError as exc:
            raise ConnectionFailure(Code.COMPRESSION_ERROR, str(exc)) from None
