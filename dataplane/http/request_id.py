"""Request IDs (``request_id``): each request's ID, made here or, from a
trusted client, taken from its own header; the header line that carries it
to the backend and back. No I/O.

An ID is 128 random bits from the kernel (``os.urandom``): 32 hex digits,
or a version 4 UUID. They are drawn POOL at a time, turned into hex and cut
into IDs at once, so a request takes its ID with one list pop: a system
call, a hex conversion and a slice per request would cost more than all the
rest of its ID's work.
"""

from __future__ import annotations

import binascii
import os

from ..config import RequestIdSettings
from .codec import pop_header


POOL = 1024          # IDs drawn from the kernel at once
TRUSTED_MAX = 200     # bytes of a client's ID kept; a longer one is replaced


def _usable(value: bytes) -> bool:
    """A client's ID that any log format can carry as it is: printable ASCII
    without spaces, quotes or backslashes, not empty, at most TRUSTED_MAX bytes."""
    return 0 < len(value) <= TRUSTED_MAX and all(32 < byte < 127 and byte != 34 and byte != 92
                                                 for byte in value)


class RequestIds:
    """One worker's request IDs."""
    __slots__ = ("name", "lower", "prefix", "trust", "echo", "uuid", "pool")

    def __init__(self, settings: RequestIdSettings) -> None:
        self.name = settings.header.encode()
        self.lower = self.name.lower()        # as the parser and h2 name it
        self.prefix = self.name + b": "
        self.trust, self.echo = settings.trust_incoming, settings.echo
        self.uuid = settings.format == "uuid"
        self.pool: list[bytes] = []     # IDs drawn and not given yet (the lane pops them itself)

    def new(self) -> bytes:
        pool = self.pool
        return pool.pop() if pool else self.refill()

    def refill(self) -> bytes:
        """Draw the next POOL IDs; one of them."""
        # A space after every 16 bytes' hex, so split() cuts the IDs apart in C.
        made = binascii.hexlify(os.urandom(16 * POOL), b" ", 16).split()
        self.pool = [_uuid(one) for one in made] if self.uuid else made
        return self.pool.pop()

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

def id_line(ids: RequestIds | None, request_id: bytes) -> bytes:
    """A request's ID as a header line of the balancer's own answer to it."""
    return ids.line(request_id) if ids is not None and request_id else b""


def fresh_line(ids: RequestIds | None) -> bytes:
    """A new ID's header line for an answer given before the request had
    one (a 429 of limits.per_client_rate); b"" when IDs are off."""
    return ids.line(ids.new()) if ids is not None else b""


def echoed(response: bytes, body_length: int, line: bytes) -> bytes:
    """A whole response (head and a body of ``body_length`` bytes) with
    ``line`` added at the end of its head."""
    at = len(response) - body_length - 2          # the blank line ending the head
    return b"%b%b%b" % (response[:at], line, response[at:])


def _uuid(text: bytes) -> bytes:
    """RFC 9562's version 4 from 32 random hex digits: 122 of their bits, the
    version (4) and variant (10) set."""
    variant = b"89ab"[int(text[16:17], 16) & 3:][:1]
    return b"%b-%b-4%b-%b%b-%b" % (text[:8], text[8:12], text[13:16], variant, text[17:20],
                                    text[20:])
