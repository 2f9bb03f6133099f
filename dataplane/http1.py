"""HTTP/1.1 message rules for a proxy, without I/O: which headers travel, how
bodies are framed on each side, and the proxy's own error responses."""

from __future__ import annotations

# Body framings
NONE, LENGTH, CHUNKED, CLOSE = 0, 1, 2, 3

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
# Never forwarded inside trailers: they would change how the message is framed.
FORBIDDEN_TRAILERS = frozenset({b"content-length", b"transfer-encoding", b"host", b"trailer"})

Headers = list[tuple[bytes, bytes]]


class Reject(Exception):
    """A request refused before it reaches a backend, with the status to answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail

REASONS = {
    400: b"Bad Request", 414: b"URI Too Long", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 413: b"Content Too Large",
    431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
}


def connection_tokens(headers: Headers) -> set[bytes]:
    """Lower-cased tokens of every Connection header (the headers they name are hop-by-hop)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if len(name) == 10 and name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


def _end_to_end(headers: Headers, tokens: set[bytes]):
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in tokens or lower.startswith(b"proxy-"):
            continue
        yield name, lower, value


def request_head(method: bytes, target: bytes, headers: Headers, client_ip: bytes,
                 framing: int, upgrade: bytes | None) -> bytes:
    """The request head sent upstream: HTTP/1.1, hop-by-hop headers dropped,
    X-Forwarded-For appended to, X-Forwarded-Proto set, body framing restated."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    forwarded_for = b""
    for name, lower, value in _end_to_end(headers, connection_tokens(headers)):
        if lower == b"x-forwarded-for":
            forwarded_for = forwarded_for + b", " + value if forwarded_for else value
        elif lower != b"x-forwarded-proto":
            parts += (name, b": ", value, b"\r\n")
    forwarded_for = forwarded_for + b", " + client_ip if forwarded_for else client_ip
    parts += (b"X-Forwarded-For: ", forwarded_for, b"\r\nX-Forwarded-Proto: http\r\n")
    if framing == CHUNKED:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade is not None:
        parts += (b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def response_head(status: int, reason: bytes, headers: Headers, framing: int,
                  connection: bytes | None, upgrade: bytes | None = None) -> bytes:
    """The response head sent to the client, re-framed for it.

    ``connection`` is the Connection header to add (b"close", b"keep-alive" for
    an HTTP/1.0 client that asked for it) or None.
    """
    parts = [b"HTTP/1.1 %d " % status, reason, b"\r\n"]
    for name, lower, value in _end_to_end(headers, connection_tokens(headers)):
        if framing == CHUNKED and lower == b"content-length":
            continue
        parts += (name, b": ", value, b"\r\n")
    if framing == CHUNKED:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade is not None:
        parts += (b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    elif connection is not None:
        parts += (b"Connection: ", connection, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def interim_head(status: int, reason: bytes, headers: Headers) -> bytes:
    """A 1xx response (100 Continue, 103 Early Hints), relayed as it came."""
    parts = [b"HTTP/1.1 %d " % status, reason, b"\r\n"]
    for name, _, value in _end_to_end(headers, connection_tokens(headers)):
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def last_chunk(trailers: Headers) -> bytes:
    parts = [b"0\r\n"]
    for name, value in trailers:
        if name.lower() not in FORBIDDEN_TRAILERS:
            parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def request_framing(headers: Headers) -> tuple[int, int]:
    """(framing, content length) of a request body; the parser has already
    rejected conflicting or invalid Content-Length and Transfer-Encoding;
    where a response carries both, Transfer-Encoding wins (RFC 9112 6.3)."""
    framing, length = NONE, 0
    for name, value in headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            return CHUNKED, 0
        if lower == b"content-length":
            framing, length = LENGTH, int(value)
    return framing, length


def response_framing(headers: Headers, status: int, head_request: bool) -> tuple[int, int]:
    """(framing, content length) of a response body as the backend sends it."""
    if head_request or status < 200 or status in (204, 304):
        return NONE, 0
    framing, length = request_framing(headers)
    if framing == NONE:
        return CLOSE, 0
    return framing, length


def client_framing(upstream: int, client_version: str) -> int:
    """How the body is framed toward the client: chunked replaces close-delimited
    for HTTP/1.1 clients (so keep-alive survives); HTTP/1.0 clients get
    close-delimited instead of chunked."""
    if client_version == "1.0":
        return CLOSE if upstream in (CHUNKED, CLOSE) else upstream
    return CHUNKED if upstream == CLOSE else upstream


def error_response(status: int, detail: str) -> bytes:
    reason = REASONS.get(status, b"Error")
    body = b"%d %b: %b\n" % (status, reason, detail.encode())
    extra = b"Retry-After: 1\r\n" if status == 503 else b""
    return (b"HTTP/1.1 %d %b\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"%bConnection: close\r\n\r\n%b" % (status, reason, len(body), extra, body))
