"""The HTTP/1.1 codec of a proxy, without I/O: which headers travel, how
bodies are framed on each side, how heads are written, and the proxy's own
error responses.

Heads are written in one canonical form, which the fast lane (lane.py) also
produces: the start line, then every end-to-end header as ``Name: value``
in the order received (Content-Length in its place), then the framing the
proxy restates (Transfer-Encoding), then the lines the proxy adds."""

from __future__ import annotations

import re

# Body framings
NONE, LENGTH, CHUNKED, CLOSE = 0, 1, 2, 3

# Never forwarded inside trailers: they would change how the message is framed.
FORBIDDEN_TRAILERS = frozenset({b"content-length", b"transfer-encoding", b"host", b"trailer"})

Headers = list[tuple[bytes, bytes]]

# How an HTTP/2 connection starts (RFC 9113 section 3.4): h2c with prior knowledge.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Reject(Exception):
    """A request refused before it reaches a backend, with the status to answer."""

    def __init__(self, status: int, detail: str, headers: bytes = b"") -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.headers = headers       # header lines for the answer (the request's ID)


REASONS = {
    200: b"OK", 204: b"No Content", 301: b"Moved Permanently", 302: b"Found",
    303: b"See Other", 307: b"Temporary Redirect", 308: b"Permanent Redirect",
    401: b"Unauthorized", 403: b"Forbidden", 429: b"Too Many Requests",
    400: b"Bad Request", 414: b"URI Too Long", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 413: b"Content Too Large", 501: b"Not Implemented",
    431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
}


class Fields:
    """What one pass over a header list tells the proxy, and the lines that travel.

    ``lines`` holds the end-to-end headers, ready to join, Content-Length
    among them: it stays true whatever the re-framing, since it never comes
    with Transfer-Encoding (llhttp refuses the pair; should it come, it is
    dropped here).
    """

    __slots__ = ("lines", "framing", "length", "host", "authority", "upgrade",
                 "forwarded_for", "connection", "coding")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.framing = NONE
        self.length = 0
        self.host = 0             # Host header fields seen (a request may have one)
        self.authority = b""      # the Host header's value
        self.upgrade: bytes | None = None
        self.forwarded_for = b""
        self.connection: set[bytes] = set()
        self.coding: bytes | None = None   # a Transfer-Encoding other than "chunked"


# Header names the proxy looks at; everything else is end to end unless a
# Connection header names it or it starts with Proxy-.
_HOST, _LENGTH, _TRANSFER, _CONNECTION, _UPGRADE, _XFF, _DROP = range(7)
_SPECIAL = {
    b"host": _HOST, b"content-length": _LENGTH, b"transfer-encoding": _TRANSFER,
    b"connection": _CONNECTION, b"upgrade": _UPGRADE, b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _DROP, b"keep-alive": _DROP, b"te": _DROP, b"trailer": _DROP,
}
_CONNECTION_WORDS = frozenset({b"keep-alive", b"close", b"upgrade", b""})


_PLAIN, _PROXY = -1, -2        # end to end; Proxy-* (never forwarded)
# Kinds by header name as sent, so that a name seen before costs one lookup
# (no lower(), no prefix test); bounded, as names come from clients.
_KINDS: dict[bytes, int] = {}
_KINDS_MAX = 1024


def _kind_of(name: bytes) -> int:
    lower = name.lower()
    kind = _SPECIAL.get(lower, _PROXY if lower.startswith(b"proxy-") else _PLAIN)
    if len(_KINDS) < _KINDS_MAX:
        _KINDS[name] = kind
    return kind


def scan(headers: Headers, named: frozenset[bytes] = frozenset()) -> Fields:
    fields = Fields()
    lines = fields.lines
    kinds = _KINDS
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            kind = _kind_of(name)
        if kind == _PLAIN:
            if not named or name.lower() not in named:
                lines += (name, b": ", value, b"\r\n")
        elif kind == _HOST:
            fields.host += 1
            fields.authority = value
            lines += (name, b": ", value, b"\r\n")
        elif kind == _LENGTH:
            fields.length = int(value)
            lines += (name, b": ", value, b"\r\n")
            if fields.framing == NONE:
                fields.framing = LENGTH
        elif kind == _TRANSFER:
            fields.framing = CHUNKED     # the parser only accepts chunked as final coding
            if value != b"chunked":
                fields.coding = value
        elif kind == _CONNECTION:
            tokens = value.lower().split(b",")
            fields.connection.update(tokens if len(tokens) == 1 else map(bytes.strip, tokens))
        elif kind == _UPGRADE:
            fields.upgrade = value
        elif kind == _XFF:
            fields.forwarded_for = (fields.forwarded_for + b", " + value
                                    if fields.forwarded_for else value)
    extra = fields.connection - _CONNECTION_WORDS
    if extra and extra - named:
        return scan(headers, named | extra)     # rare: drop what Connection names
    if fields.framing == CHUNKED and fields.length:
        # Never both (llhttp refuses them together): chunked decides, the length goes.
        fields.lines = [part for at in range(0, len(lines), 4) for part in lines[at:at + 4]
                        if _kind_of(lines[at]) != _LENGTH]
    return fields


# A control byte (RFC 9112 section 4 allows tab, space and visible bytes only).
CONTROL_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search


def reason_phrase(reason: bytes, status: int) -> bytes:
    """A backend's reason phrase as it is, or ours when it holds control bytes."""
    return reason if CONTROL_BYTE(reason) is None else REASONS.get(status, b"")


def chunked_once_and_last(coding: bytes) -> bool:
    """Whether a Transfer-Encoding ends in chunked and applies it only there
    (RFC 9112 section 6.1); "gzip, chunked" does, "chunked, chunked" does not."""
    codings = [token.strip() for token in coding.lower().split(b",")]
    return codings[-1] == b"chunked" and codings.count(b"chunked") == 1


def _framing_lines(fields: Fields, framing: int) -> list[bytes]:
    if framing == CHUNKED:     # a response's other codings (gzip, chunked) stay
        return [b"Transfer-Encoding: ", fields.coding or b"chunked", b"\r\n"]
    return []


def pop_header(lines: list[bytes], lower: bytes) -> tuple[list[bytes], list[bytes]]:
    """The values of the ``lower`` headers in ``lines`` (as Fields keeps them:
    name, ": ", value, CRLF), and the lines without them."""
    found = [at for at in range(0, len(lines), 4) if lines[at].lower() == lower]
    if not found:
        return [], lines
    values = [lines[at + 2] for at in found]
    return values, [piece for at in range(0, len(lines), 4) if at not in found
                    for piece in lines[at:at + 4]]


def request_head(method: bytes, target: bytes, fields: Fields, client_ip: bytes,
                 forwarded: bytes, upgrade: bool) -> bytes:
    """The request head sent upstream: HTTP/1.1, hop-by-hop headers dropped,
    X-Forwarded-For appended to, ``forwarded`` (X-Forwarded-Proto and what
    else the connection says of the client, whole lines) added, body framing
    restated."""
    forwarded_for = fields.forwarded_for + b", " + client_ip if fields.forwarded_for \
        else client_ip
    parts = [method, b" ", target, b" HTTP/1.1\r\n", *fields.lines,
             *_framing_lines(fields, fields.framing),
             b"X-Forwarded-For: ", forwarded_for, b"\r\n", forwarded]
    if upgrade and fields.upgrade is not None:
        parts += (b"Connection: upgrade\r\nUpgrade: ", fields.upgrade, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def response_head(status: int, reason: bytes, fields: Fields, framing: int,
                  connection: bytes | None, upgrade: bytes | None = None) -> bytes:
    """The response head sent to the client, re-framed for it.

    ``connection`` is the Connection header to add (b"close", b"keep-alive" for
    an HTTP/1.0 client that asked for it) or None.
    """
    parts = [b"HTTP/1.1 %d " % status, reason, b"\r\n", *fields.lines,
             *_framing_lines(fields, framing)]
    if upgrade is not None:
        parts += (b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    elif connection is not None:
        parts += (b"Connection: ", connection, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def interim_head(status: int, reason: bytes, headers: Headers) -> bytes:
    """A 1xx response (100 Continue, 103 Early Hints), relayed as it came."""
    return b"".join([b"HTTP/1.1 %d " % status, reason, b"\r\n", *scan(headers).lines, b"\r\n"])


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk; nothing for no data (a chunk of size 0 is the
    last chunk: an empty HTTP/2 DATA frame, as gRPC clients send before
    END_STREAM, would end the body early)."""
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


def last_chunk(trailers: Headers) -> bytes:
    parts = [b"0\r\n"]
    for name, value in trailers:
        if name.lower() not in FORBIDDEN_TRAILERS:
            parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def response_framing(fields: Fields, status: int, head_request: bool) -> int:
    """How the backend frames its response body (RFC 9112 section 6.3)."""
    if head_request or status < 200 or status in (204, 304):
        return NONE
    return CLOSE if fields.framing == NONE else fields.framing


def client_framing(upstream: int, client_version: str) -> int:
    """How the body is framed toward the client: chunked replaces close-delimited
    for HTTP/1.1 clients (so keep-alive survives); HTTP/1.0 clients get
    close-delimited instead of chunked; HTTP/2 clients get the bytes as they
    are, ended by the stream's end (CLOSE) or counted (LENGTH)."""
    if client_version == "1.0":
        return CLOSE if upstream in (CHUNKED, CLOSE) else upstream
    if client_version == "2.0":        # an h2 stream ends with END_STREAM
        return CLOSE if upstream == CHUNKED else upstream
    return CHUNKED if upstream == CLOSE else upstream


def local_response(status: int, headers: bytes, body: bytes, head_only: bool) -> bytes:
    """An answer of the balancer's own (``headers``: lines ending in CRLF)."""
    reason = REASONS.get(status, b"OK" if status < 300 else b"Error")
    return b"HTTP/1.1 %d %b\r\n%bContent-Length: %d\r\n\r\n%b" % (
        status, reason, headers, len(body), b"" if head_only else body)


def error_parts(status: int, detail: str, headers: bytes = b"") -> tuple[bytes, bytes]:
    """An error answer's header lines beyond Content-Type (text/plain) and
    -Length (each ending in CRLF; ``headers`` added), and its body, for any
    HTTP version."""
    body = b"%d %b: %b\n" % (status, REASONS.get(status, b"Error"), detail.encode())
    return (b"Retry-After: 1\r\n" if status in (429, 503) else b"") + headers, body


def error_response(status: int, detail: str, headers: bytes = b"") -> bytes:
    """The balancer's own answer; ``headers``: more header lines, each ending in CRLF."""
    lines, body = error_parts(status, detail, headers)
    return (b"HTTP/1.1 %d %b\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"%bConnection: close\r\n\r\n%b"
            % (status, REASONS.get(status, b"Error"), len(body), lines, body))
