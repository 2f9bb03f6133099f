"""What a request's or trailers' header fields must be over HTTP/2 (RFC 9113
section 8.2 and 8.3); a request that is not is malformed, and a stream
error. No I/O."""

from __future__ import annotations

import re

Headers = list[tuple[bytes, bytes]]

# Connection-specific fields have no meaning in HTTP/2 (section 8.2.2).
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade"})
REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
# A name: lowercase token characters only; a value: no NUL, CR or LF, and no
# white space at either end (section 8.2.1).
_BAD_NAME = re.compile(rb"[^a-z0-9!#$%&'*+\-.^_`|~]").search
_BAD_VALUE = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$").search


class Malformed(Exception):
    """The stream is reset with PROTOCOL_ERROR (section 8.1.1)."""


def request(block: Headers) -> int | None:
    """Check a request's fields; its Content-Length, if it has one."""
    seen: set[bytes] = set()
    regular = False
    length: int | None = None
    method = b""
    for name, value in block:
        if name[:1] == b":":
            if regular or name not in REQUEST_PSEUDO or name in seen:
                raise Malformed(f"pseudo-header {name!r} misplaced, unknown or repeated")
            seen.add(name)
            if name == b":method":
                method = value
        else:
            regular = True
            length = _regular(name, value, length)
        if _BAD_VALUE(value) is not None:
            raise Malformed(f"field {name!r} has a forbidden character")
    if method == b"CONNECT":
        if b":authority" not in seen or b":scheme" in seen or b":path" in seen:
            raise Malformed("CONNECT needs :authority and no :scheme or :path")
    elif not method or b":scheme" not in seen or b":path" not in seen:
        raise Malformed("a request needs :method, :scheme and :path")
    elif not dict(block).get(b":path"):
        raise Malformed(":path is empty")
    return length


def response(block: Headers) -> None:
    """Check a response head's fields (``:status`` first, no other
    pseudo-header) or its trailers' (none at all) from a backend."""
    for at, (name, value) in enumerate(block):
        if name[:1] == b":":
            if at or name != b":status":
                raise Malformed(f"pseudo-header {name!r} in a response")
        else:
            _regular(name, value, None)
        if _BAD_VALUE(value) is not None:
            raise Malformed(f"field {name!r} has a forbidden character")


def trailers(block: Headers) -> None:
    for name, value in block:
        if name[:1] == b":":
            raise Malformed("pseudo-header in trailers")
        _regular(name, value, None)
        if _BAD_VALUE(value) is not None:
            raise Malformed(f"field {name!r} has a forbidden character")


def _regular(name: bytes, value: bytes, length: int | None) -> int | None:
    if not name or _BAD_NAME(name) is not None:
        raise Malformed(f"field name {name!r} is not a lowercase token")
    if name in CONNECTION_SPECIFIC:
        raise Malformed(f"connection-specific field {name!r}")
    if name == b"te" and value != b"trailers":
        raise Malformed("te other than trailers")
    if name == b"content-length":
        if not value.isdigit() or (length is not None and int(value) != length):
            raise Malformed("content-length is not one number")
        return int(value)
    return length
