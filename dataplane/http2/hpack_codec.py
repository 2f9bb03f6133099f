"""HPACK (RFC 7541) for a server: requests decoded, responses encoded. No I/O.

Decoding keeps the client's dynamic table, bounded by our
SETTINGS_HEADER_TABLE_SIZE, and stops a header list at
SETTINGS_MAX_HEADER_LIST_SIZE (each field counted as name + value + 32
bytes, as RFC 7541 sizes table entries) while still reading the whole block,
so that the table stays in step with the client's. ``generation`` changes
whenever the table does: a block decoded twice in one generation decodes the
same, which is what lets a connection remember the blocks it has seen.

Encoding never indexes: every response field is a literal without indexing
(its name from the static table where it is there), and the first block
sets our dynamic table to size 0. So there is no encoder state to keep in
step, and a client's SETTINGS_HEADER_TABLE_SIZE needs nothing from us.
Huffman decoding and the static table come from the hpack package.
"""

from __future__ import annotations

from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

Headers = list[tuple[bytes, bytes]]
STATIC = HeaderTable.STATIC_TABLE          # 61 (name, value) pairs, index 1 first
_STATIC_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(STATIC, 1):
    _STATIC_NAMES.setdefault(_name, _index)
_STATUS_INDEXED = {value: bytes((0x80 | index,)) for index, (name, value)
                   in enumerate(STATIC, 1) if name == b":status"}


class HpackError(Exception):
    """The block cannot be decoded: a connection error (COMPRESSION_ERROR)."""


class Decoder:
    __slots__ = ("table", "table_size", "limit", "max_table", "max_list", "generation",
                 "oversized")

    def __init__(self, max_table: int, max_list: int) -> None:
        # Oldest first (a list: 56 bytes empty, a deque 600, on every connection).
        self.table: list[tuple[bytes, bytes]] = []
        self.table_size = 0
        self.limit = 4096              # the table's size now: the protocol's default...
        self.max_table = max_table     # ...and what a size update may ask (our SETTINGS)
        self.max_list = max_list
        self.generation = 0
        self.oversized = False         # the last block's list went over max_list

    def decode(self, block: bytes) -> Headers:
        headers: Headers = []
        self.oversized = False
        size, at, end = 0, 0, len(block)
        first = True                   # size updates may only open a block
        while at < end:
            byte = block[at]
            if byte & 0x80:                              # indexed field
                index, at = _integer(block, at, 7)
                name, value = self._entry(index)
            elif byte & 0x40:                            # literal, indexed after
                name, value, at = self._literal(block, at, 6)
                self._insert(name, value)
            elif byte & 0x20:                            # dynamic table size update
                if not first:
                    raise HpackError("table size update after a field")
                wanted, at = _integer(block, at, 5)
                if wanted > self.max_table:
                    raise HpackError(f"table size {wanted} over SETTINGS ({self.max_table})")
                self._resize(wanted)
                continue
            else:                                        # literal, not indexed (or never)
                name, value, at = self._literal(block, at, 4)
            first = False
            size += len(name) + len(value) + 32
            if size > self.max_list:
                self.oversized = True
            else:
                headers.append((name, value))
        return headers

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= 61:
            return STATIC[index - 1]
        dynamic = index - 62
        if index == 0 or dynamic >= len(self.table):
            raise HpackError(f"no table entry {index}")
        return self.table[-1 - dynamic]

    def _literal(self, block: bytes, at: int, prefix: int) -> tuple[bytes, bytes, int]:
        index, at = _integer(block, at, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, at = _string(block, at)
        value, at = _string(block, at)
        return name, value, at

    def _insert(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 32
        if size > self.limit:              # RFC 7541 section 4.4: the table empties
            if self.table:                 # (an empty one, as at size 0, stays as it was)
                self.generation += 1
                self.table.clear()
                self.table_size = 0
            return
        self.generation += 1
        self.table.append((name, value))
        self.table_size += size
        self._evict()

    def _resize(self, size: int) -> None:
        self.generation += 1
        self.limit = size
        self._evict()

    def _evict(self) -> None:
        table, limit = self.table, self.limit
        while self.table_size > limit:
            name, value = table.pop(0)
            self.table_size -= len(name) + len(value) + 32


def _integer(block: bytes, at: int, prefix: int) -> tuple[int, int]:
    """RFC 7541 section 5.1: an integer with an N-bit prefix; where it ends."""
    mask = (1 << prefix) - 1
    value = block[at] & mask
    at += 1
    if value < mask:
        return value, at
    shift = 0
    while True:
        if at >= len(block) or shift > 28:
            raise HpackError("integer truncated or too large")
        byte = block[at]
        at += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _string(block: bytes, at: int) -> tuple[bytes, int]:
    if at >= len(block):
        raise HpackError("string missing")
    huffman = block[at] & 0x80
    length, at = _integer(block, at, 7)
    end = at + length
    if end > len(block):
        raise HpackError("string truncated")
    data = block[at:end]
    if huffman:
        known = _HUFFMAN.get(data)
        if known is not None:
            return known, end
        try:
            decoded = decode_huffman(data)
        except Exception as exc:      # hpack raises its own decoding errors
            raise HpackError(f"bad Huffman string: {exc}") from None
        if len(_HUFFMAN) >= _KEPT:
            _HUFFMAN.clear()
        _HUFFMAN[data] = decoded
        return decoded, end
    return data, end


# Huffman strings decoded and blocks encoded, kept per worker: header values
# repeat (a backend's server and date, a client's user-agent), and pure-Python
# Huffman decoding costs about 20 us a string. Emptied when full, so a peer
# sending ever new strings costs memory no more than this.
_KEPT = 4096
_HUFFMAN: dict[bytes, bytes] = {}
_ENCODED: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}

# A connection's first block opens with this: our dynamic table is size 0.
TABLE_OFF = b"\x20"


def encode(headers: Headers) -> bytes:
    """A block of literals without indexing (a response's, or a request's to
    a backend); the same fields encode the same, so blocks are kept."""
    key = tuple(headers)
    known = _ENCODED.get(key)
    if known is not None:
        return known
    if len(_ENCODED) >= _KEPT:
        _ENCODED.clear()
    encoded = _ENCODED[key] = _encode(headers)
    return encoded


def _encode(headers: Headers) -> bytes:
    out = bytearray()
    for name, value in headers:
        if name == b":status" and value in _STATUS_INDEXED:
            out += _STATUS_INDEXED[value]
            continue
        prefix = _NAME_PREFIX.get(name)
        if prefix is None:
            out += b"\x00"
            out += _length(len(name))
            out += name
        else:
            out += prefix
        out += _length(len(value))
        out += value
    return bytes(out)


def _name_prefix(index: int) -> bytes:
    """A literal without indexing whose name is static entry ``index``."""
    return bytes((index,)) if index < 15 else b"\x0f" + _rest(index - 15)




def _length(length: int) -> bytes:
    """A string's length with a 7-bit prefix, no Huffman."""
    if length < 127:
        return _LENGTHS[length]
    return b"\x7f" + _rest(length - 127)


def _rest(value: int) -> bytes:
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_NAME_PREFIX = {name: _name_prefix(index) for name, index in _STATIC_NAMES.items()}
_LENGTHS = [bytes((length,)) for length in range(127)]
