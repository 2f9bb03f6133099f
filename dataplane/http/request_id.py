"""Request IDs (``request_id``): each request's ID, made here or, from a
trusted client, taken from its own header; the header line that carries it
to the backend and back. No I/O.

An ID is 128 random bits from the worker's own generator (seeded from the
kernel's, so workers never repeat each other): 32 hex digits, or a version 4
UUID. It need not be secret, so a system call per request (``os.urandom``)
would buy nothing.
"""

from __future__ import annotations

import os
import random

from ..config import RequestIdSettings
from .codec import pop_header


TRUSTED_MAX = 200     # bytes of a client's ID kept; a longer one is replaced


def _usable(value: bytes) -> bool:
    """A client's ID that any log format can carry as it is: printable ASCII
    without spaces, quotes or backslashes, not empty, at most TRUSTED_MAX bytes."""
    return 0 < len(value) <= TRUSTED_MAX and all(32 < byte < 127 and byte != 34 and byte != 92
                                                 for byte in value)


class RequestIds:
    """One worker's request IDs."""
    __slots__ = ("name", "lower", "prefix", "trust", "echo", "bits", "uuid")

    def __init__(self, settings: RequestIdSettings) -> None:
        self.name = settings.header.encode()
        self.lower = self.name.lower()        # as the parser and h2 name it
        self.prefix = self.name + b": "
        self.trust, self.echo = settings.trust_incoming, settings.echo
        self.bits = random.Random(os.urandom(16)).getrandbits
        self.uuid = settings.format == "uuid"

    def new(self) -> bytes:
        if self.uuid:
            return self._uuid()
        return b"%032x" % self.bits(128)

    def _uuid(self) -> bytes:
        """RFC 9562's version 4: 122 random bits, the version and variant set."""
        n = self.bits(128) & ~(0xF000 << 64 | 0xC000 << 48) | (0x4000 << 64 | 0x8000 << 48)
        text = b"%032x" % n
        return b"-".join((text[:8], text[8:12], text[12:16], text[16:20], text[20:]))

    def line(self, request_id: bytes) -> bytes:
        """The header line that carries ``request_id``."""
        return b"%b%b\r\n" % (self.prefix, request_id)

    def pieces(self, request_id: bytes) -> tuple[bytes, ...]:
        """The same as codec.Fields keeps a line: name, ": ", value, CRLF."""
        return self.name, b": ", request_id, b"\r\n"

    def taken(self, lines: list[bytes]) -> tuple[bytes, bytes, list[bytes]]:
        """A request's ID, the line to add for it (b"" when the client's own
        stays) and the header lines to send (``lines`` as codec.Fields keeps
        them): a trusted client's first ID is kept as it is; otherwise the
        client's are removed and a new one is made."""
        values, without = pop_header(lines, self.lower)
        if values and self.trust and _usable(values[0]):
            return values[0], b"", lines
        made = self.new()
        return made, self.line(made), without

def echoed(response: bytes, body_length: int, line: bytes) -> bytes:
    """A whole response (head and a body of ``body_length`` bytes) with
    ``line`` added at the end of its head."""
    at = len(response) - body_length - 2          # the blank line ending the head
    return b"%b%b%b" % (response[:at], line, response[at:])
