"""An HTTP/2 request's header block as the general path's RequestHead, and
what it must be to go on (RFC 9113 section 8.3). No I/O.

The h2 package has checked the block already (pseudo-headers present, once
and first; lowercase names; no connection-specific field). Here
``:authority`` becomes Host (it wins over a Host field, section 8.3.1),
split Cookie fields are joined again for an HTTP/1.1 backend (section
8.2.3), and a body without Content-Length is chunked upstream.
"""

from __future__ import annotations

from ..http import codec
from ..http.codec import CHUNKED, LENGTH, NONE, Reject
from ..http.request import RequestHead


def request_head(block: codec.Headers, ended: bool, stripped: frozenset[bytes],
                 body_limit: int | None) -> RequestHead:
    """``block``: the stream's header fields; ``ended``: END_STREAM came with
    them (no body). Raises Reject for what may not pass."""
    head = RequestHead()
    head.version = "2.0"
    authority = host = b""
    cookies: list[bytes] = []
    plain: codec.Headers = []
    for name, value in block:
        if name[:1] == b":":
            if name == b":method":
                head.method = value
            elif name == b":path":
                head.target = value
            elif name == b":authority":
                authority = value
        elif name == b"cookie":
            cookies.append(value)
        elif name == b"host":
            host = value
        else:
            plain.append((name, value))
    if head.method == b"CONNECT":
        raise Reject(405, "CONNECT is not supported by a reverse proxy")
    authority = authority or host
    if not authority:
        raise Reject(400, "HTTP/2 request without :authority or Host")
    plain.insert(0, (b"host", authority))
    if cookies:
        plain.append((b"cookie", b"; ".join(cookies)))
    head.headers = plain
    try:
        fields = head.fields = codec.scan(plain, stripped)
    except ValueError:
        raise Reject(400, "content-length is not a number") from None
    if fields.framing == NONE and not ended:
        fields.framing = CHUNKED
    head.framing, head.length = fields.framing, fields.length
    if body_limit is not None and fields.framing == LENGTH and fields.length > body_limit:
        raise Reject(413, f"request body larger than limits.body_bytes ({body_limit})")
    return head


def response_block(status: int, lines: list[bytes]) -> codec.Headers:
    """A response head for an h2 stream, from header lines as codec.Fields
    keeps them (name, ": ", value, CRLF): names lowercased."""
    block = [(b":status", b"%d" % status)]
    block += [(lines[at].lower(), lines[at + 2]) for at in range(0, len(lines), 4)]
    return block


def answer_block(status: int, lines: bytes, length: int) -> codec.Headers:
    """The head of an answer of the balancer's own, from header lines ending
    in CRLF, with its Content-Length."""
    block = [(b":status", b"%d" % status)]
    for line in lines.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name:
            block.append((name.lower(), value.strip()))
    block.append((b"content-length", b"%d" % length))
    return block


def trailer_block(trailers: codec.Headers) -> codec.Headers:
    """A backend's trailers as an h2 stream may send them."""
    return [(name.lower(), value) for name, value in trailers
            if name.lower() not in codec.FORBIDDEN_TRAILERS]
