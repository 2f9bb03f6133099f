"""Hypothesis strategies for malformed and ambiguous HTTP/1.1 messages: the
request smuggling classics (CL+TE, duplicate and comma-joined Content-Length,
odd Transfer-Encodings), obs-fold, bare LF, whitespace before the colon,
invalid or huge chunk sizes, chunk extensions, NUL and control bytes, odd
targets and versions, oversize lines, Expect variants."""

from __future__ import annotations

from hypothesis import strategies as st

# Each part is usually right (the first entry, or any of the first few), so
# that a case carries one or two oddities: enough reach the backend to test
# framing, and each refusal has a cause that shrinks to one line.
METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE",
           b"get", b"CONNECT", b"G\x00T", b"GE T", b"X-Custom"]
TARGETS = [b"/", b"/a/b?c=d", b"/%2e%2e/x", b"//double", b"http://h.example/abs", b"*", b"",
           b"/sp ace", b"/\x7fdel", b"/\x00nul", b"/tab\tx", b"/" + b"a" * 70000, b"/\xffhigh"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.10",
            b"HTTP/0.9", b"HTTP/1.1 "]
EOLS = [b"\r\n", b"\n", b"\r", b"\r\r\n"]
SEPARATORS = [b": ", b":", b":\t", b":  ", b" : ", b"\t:"]
VALUE_NOISE = [b"", b" ", b"\t", b"\x00", b"\x01", b"\x7f", b"\xff", b"\r", b"\n"]
LENGTH_SPELLINGS = ["{n}", "+{n}", " {n}", "{n} ", "0{n}", "{n}, {n}", "{n},{m}", "-{n}", "{n}.0",
                    "0x{n}", "{n}_0", "99999999999999999999", ""]
CODINGS = [b"chunked", b"Chunked", b" chunked", b"chunked ", b"gzip, chunked", b"chunked, gzip",
           b"identity", b"chunked, chunked", b"chunk", b"\x0bchunked", b"chunked\x00",
           b'"chunked"']
EXPECTS = [b"100-continue", b"100-Continue", b"100-continue, foo", b"nonsense", b""]


def usually(draw, choices: list, good: int = 1):
    """One of the first ``good`` choices seven times in eight, else any."""
    pool = choices if draw(st.integers(0, 7)) == 0 else choices[:good]
    return draw(st.sampled_from(pool))


@st.composite
def chunked_body(draw, body: bytes) -> bytes:
    """``body`` in chunks, with the odd size spelling, extension or trailer."""
    out, rest = b"", body
    while rest:
        size = draw(st.integers(1, len(rest)))
        piece, rest = rest[:size], rest[size:]
        spelled = usually(draw, ["{:x}", "{:X}", "{:04x}", "{:x};ext=1", "{:x};e=\"q\"",
                                 " {:x}", "{:x} ", "{:x}\x00", "+{:x}"], good=5)
        out += spelled.format(size).encode() + b"\r\n" + piece + b"\r\n"
    last = usually(draw, [b"0\r\n\r\n", b"0;x=y\r\n\r\n", b"0\r\nT: v\r\n\r\n", b"00\r\n\r\n",
                          b"0\n\n", b"ffffffffffffffffff\r\n", b"zz\r\n\r\n",
                          b"0\r\nContent-Length: 5\r\n\r\n"], good=4)
    return out + last


def _framed(draw, headers: list, body: bytes, codings: list = CODINGS) -> bytes:
    """Add framing headers for ``body`` (rightly or not); the payload that follows."""
    framing = draw(st.sampled_from(["none", "length", "length", "chunked", "chunked", "both"]))
    if framing in ("length", "both"):
        spelling = usually(draw, LENGTH_SPELLINGS)
        headers.append((b"Content-Length",
                        spelling.format(n=len(body), m=len(body) + 1).encode()))
        if draw(st.integers(0, 4)) == 0:
            headers.append((b"Content-Length", str(len(body)).encode()))
    if framing in ("chunked", "both"):
        headers.append((b"Transfer-Encoding", usually(draw, codings, good=2)))
        return draw(chunked_body(body)) if body else b"0\r\n\r\n"
    return body if framing != "none" else b""


def _head(draw, first_line: bytes, headers: list) -> bytes:
    """The head's bytes, with noise headers, odd separators, line ends and folds."""
    eol = lambda: usually(draw, EOLS) if draw(st.booleans()) else b"\r\n"  # noqa: E731
    for _ in range(draw(st.integers(0, 2))):
        headers.insert(draw(st.integers(0, len(headers))),
                       (usually(draw, [b"X-A", b"x-a", b"X A", b"X\x00A", b"", b"X-\xff"], 2),
                        b"v" + usually(draw, VALUE_NOISE, good=3) + b"w"))
    lines = [first_line + eol()]
    for name, value in headers:
        line = name + usually(draw, SEPARATORS, good=4) + value + eol()
        if draw(st.integers(0, 15)) == 0:
            line += b" folded\r\n"               # obs-fold continuation
        lines.append(line)
    lines.append(eol())
    return b"".join(lines)


@st.composite
def requests(draw) -> bytes:
    """One request's bytes: a line, headers (with the odd mistake), framing, body."""
    method = usually(draw, METHODS, good=8)
    target = usually(draw, TARGETS, good=5)
    version = usually(draw, VERSIONS, good=2)
    headers: list[tuple[bytes, bytes]] = []
    if draw(st.integers(0, 9)):
        headers.append((b"Host", usually(draw, [b"h.example", b"h.example:80", b"", b"a b"], 2)))
    if draw(st.integers(0, 7)) == 0:
        headers.append((b"Host", b"other.example"))      # a second Host
    payload = _framed(draw, headers, draw(st.binary(max_size=40)))
    if draw(st.integers(0, 4)) == 0:
        headers.append((b"Expect", draw(st.sampled_from(EXPECTS))))
    if draw(st.integers(0, 4)) == 0:
        headers.append((b"Connection", draw(st.sampled_from(
            [b"keep-alive", b"close", b"X-Drop", b"keep-alive, X-Drop", b"upgrade"]))))
        headers.append((b"X-Drop", b"1"))
    return _head(draw, method + b" " + target + b" " + version, headers) + payload


# A response may carry codings before chunked (gzip, chunked), which the
# balancer passes on; h11, the client's oracle, reads none of them, so they
# are left out here (test_proxy covers them).
RESPONSE_CODINGS = [c for c in CODINGS if b"gzip" not in c and b"identity" not in c]
STATUS_LINES = [b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found", b"HTTP/1.0 200 OK",
                b"HTTP/1.1 204 No Content", b"HTTP/1.1 304 Not Modified", b"HTTP/1.1 200",
                b"HTTP/1.1 200 ", b"HTTP/2 200 OK", b"http/1.1 200 OK", b"HTTP/1.1 99 Low",
                b"HTTP/1.1 1000 High", b"HTTP/1.1 abc OK", b"HTTP/1.1  200 OK", b"HTTP/1.1 200 O\x00K",
                b"HTTP/1.1 101 Switching Protocols"]
INTERIM = [b"", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
           b"HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\n"]


@st.composite
def responses(draw) -> bytes:
    """One response's bytes, perhaps after an interim one; the backend closes after it."""
    headers: list[tuple[bytes, bytes]] = []
    payload = _framed(draw, headers, draw(st.binary(max_size=40)), RESPONSE_CODINGS)
    if draw(st.integers(0, 4)) == 0:
        headers.append((b"Connection", draw(st.sampled_from([b"close", b"keep-alive", b"X-Drop"]))))
        headers.append((b"X-Drop", b"1"))
    return usually(draw, INTERIM, good=1) + _head(draw, usually(draw, STATUS_LINES, 6), headers) \
        + payload
