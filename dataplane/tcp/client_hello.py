"""The server name a TLS ClientHello asks for (RFC 8446 4.1.2, RFC 6066 3),
read without I/O and without decrypting anything: TCP mode's passthrough
routes a TLS stream by it and relays the stream untouched.

Only the first record is read, as every client sends its ClientHello in one
(at most 16 KiB); a ClientHello split over records counts as not TLS.
"""

from __future__ import annotations

import struct

MAX_RECORD = 5 + (1 << 14)     # record header + the largest plaintext fragment
NEED_MORE = "need more"


class NotTls(ValueError):
    """The bytes are not a TLS ClientHello."""


def server_name(data: bytes) -> str | None:
    """The SNI host name (lowercase), None when the ClientHello has none, or
    NEED_MORE while the first record is incomplete; raises NotTls."""
    if len(data) < 5:
        return NEED_MORE
    kind, _major, length = data[0], data[1], struct.unpack_from("!H", data, 3)[0]
    if kind != 22 or _major != 3 or length > MAX_RECORD - 5:
        raise NotTls("not a TLS handshake record")
    if len(data) < 5 + length:
        return NEED_MORE
    return _from_hello(memoryview(data)[5:5 + length])


def _from_hello(body: memoryview) -> str | None:
    reader = _Reader(body)
    if reader.byte() != 1:                      # handshake type: ClientHello
        raise NotTls("not a ClientHello")
    hello = _Reader(reader.take(reader.uint(3)))
    hello.take(2 + 32)                          # legacy_version, random
    hello.take(hello.byte())                    # legacy_session_id
    hello.take(hello.uint(2))                   # cipher_suites
    hello.take(hello.byte())                    # legacy_compression_methods
    if hello.left == 0:
        return None                             # no extensions at all
    extensions = _Reader(hello.take(hello.uint(2)))
    while extensions.left:
        kind, data = extensions.uint(2), extensions.take(extensions.uint(2))
        if kind == 0:                           # server_name
            return _host_name(_Reader(data))
    return None


def _host_name(ext: "_Reader") -> str | None:
    names = _Reader(ext.take(ext.uint(2)))
    while names.left:
        kind, name = names.byte(), names.take(names.uint(2))
        if kind == 0:                           # host_name
            try:
                return bytes(name).decode("ascii").lower().rstrip(".")
            except UnicodeDecodeError:
                raise NotTls("a server name that is not ASCII") from None
    return None


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self.data, self.at = data, 0

    @property
    def left(self) -> int:
        return len(self.data) - self.at

    def take(self, count: int) -> memoryview:
        if count > self.left:
            raise NotTls("a ClientHello cut short")
        part = self.data[self.at:self.at + count]
        self.at += count
        return part

    def byte(self) -> int:
        return self.take(1)[0]

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")
