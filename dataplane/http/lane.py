"""The fast lane's checks, without I/O: is this one read a whole request the
lane can carry, and is this one read a whole response it can hand back?

The lane takes what it can prove simple and leaves everything else to the
general path (exchange.py), which would send the very same bytes: a read
that holds exactly one HTTP/1.1 request with no body or a Content-Length
one, Host as its first header, no header the proxy must act on but
``Connection: keep-alive``, every header in the canonical ``Name: value``
form that the codec writes (codec.py), valid by llhttp; and a response
read that holds exactly one HTTP/1.1 response framed by Content-Length with
a status of 200 or more (not 204 or 304), no header the proxy acts on but
``Connection: keep-alive`` and ``Keep-Alive``, valid by llhttp. The
differential fuzz (tests/test_lane.py) holds both paths to the same bytes.

Validation uses one llhttp parser per process for each direction, with no
callbacks: a read the lane accepts is one whole message, so the parser ends
every feed at a message boundary, ready for any connection's next one.
"""

from __future__ import annotations

import re

import httptools

from .codec import CONTROL_BYTE

# Headers the proxy acts on (as the codec reads them, lower case), or a
# header line not in the canonical form: either sends a request elsewhere.
_REQUEST_SPECIAL = re.compile(
    rb"\n(?:(content-length|connection|transfer-encoding|upgrade|keep-alive|te|trailer|expect"
    rb"|host|x-forwarded-for|x-forwarded-proto|proxy-[^:]*):([^\r]*)|[^:]*:(?! [^ \t\r]))")
_RESPONSE_SPECIAL = re.compile(
    rb"\n(?:(content-length|connection|transfer-encoding|upgrade|keep-alive|te|trailer"
    rb"|x-forwarded-for|x-forwarded-proto|proxy-[^:]*):([^\r]*)|[^:]*:(?! [^ \t\r]))")
_KEEP_ALIVE = b" keep-alive"
MAX_BODY = 64 * 1024     # a larger request body (rarely in one read) takes the general path


class _NoCallbacks:
    """llhttp then only validates."""


class _Validators:
    __slots__ = ("request", "response")

    def __init__(self) -> None:
        self.request = httptools.HttpRequestParser(_NoCallbacks())
        self.response = httptools.HttpResponseParser(_NoCallbacks())


_valid = _Validators()


def simple_request(data: bytes, tail: bytes, max_head: int, max_headers: int, max_body: int
                   ) -> tuple[bytes, bytes, bytes, bytes, int] | None:
    """The head to send upstream for a request read whole in ``data``
    (``tail``: the proxy's own lines and the blank line ending the head;
    the body, if any, follows it), the request's method, target and Host, and
    its body length; None when the lane cannot take it. ``max_head``,
    ``max_headers`` and ``max_body``: limits.header_bytes, limits.headers,
    and the lesser of limits.body_bytes and MAX_BODY."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > max_head:
        return None
    space = data.find(b" ")
    version = data.find(b" ", space + 1)       # a target holds no space (llhttp checks)
    if not data.startswith(b" HTTP/1.1\r\nHost: ", version):
        return None
    at = version + 17
    host_end = data.find(b"\r\n", at)
    if data[at] in b" \t":
        return None
    head = data[:end + 2]
    length = 0
    if host_end < end:
        low = head.lower()
        found = _REQUEST_SPECIAL.findall(low, host_end)
        if found:
            for name, value in found:
                if name == b"content-length" and not length and value[:1] == b" " \
                        and value[1:2].isdigit():
                    length = int(value)
                elif name == b"connection" and value == _KEEP_ALIVE:
                    head = _cut(head, low)
                else:
                    return None
        # Canonical lines are 6 bytes at least ("a: b\r\n"): count them only
        # when there may be too many.
        if end > 6 * max_headers and data.count(b"\n", 0, end) > max_headers:
            return None
    if end + 4 + length != len(data) or length > max_body:
        return None
    method = data[:space]
    if method == b"HEAD" or method == b"CONNECT":
        return None
    try:
        _valid.request.feed_data(data)
    except httptools.HttpParserError:
        _valid.request = httptools.HttpRequestParser(_NoCallbacks())
        return None
    return head + tail, method, data[space + 1:version], data[at:host_end], length


def _cut(head: bytes, low: bytes) -> bytes:
    """``head`` without its Connection: keep-alive line (as browsers write
    it, else found in its lower-case copy ``low``)."""
    cut = head.replace(b"\r\nConnection: keep-alive\r\n", b"\r\n", 1)
    if len(cut) < len(head):
        return cut
    at = low.find(b"\r\nconnection: keep-alive\r\n")
    return head[:at] + head[at + 24:]


_OK = b"HTTP/1.1 200 OK\r\n"
_STATUS = {b"%d" % code: code for code in range(200, 600) if code not in (204, 304)}


def simple_response(data: bytes) -> tuple[bytes, int, int] | None:
    """What the client gets for a response read whole in ``data``, its status
    and its body length; None when the lane cannot take it."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    if data.startswith(_OK):
        status, line = 200, 15
    elif data.startswith(b"HTTP/1.1 ") and data[12] == 32 and data[9:12] in _STATUS:
        status, line = _STATUS[data[9:12]], data.find(b"\r\n")
        if CONTROL_BYTE(data, 13, line) is not None:
            return None
    else:
        return None
    length = len(data) - end - 4
    low = data[:end + 2].lower()
    sized = False
    cuts = 0
    for name, value in _RESPONSE_SPECIAL.findall(low, line):
        if name == b"content-length" and not sized and value == b" %d" % length:
            sized = True
        elif name == b"connection" and value == _KEEP_ALIVE or name == b"keep-alive":
            cuts += 1
        else:
            return None
    if not sized:
        return None
    try:
        _valid.response.feed_data(data)
    except httptools.HttpParserError:
        _valid.response = httptools.HttpResponseParser(_NoCallbacks())
        return None
    if not cuts:
        return data, status, length
    if cuts == 1 and (at := low.find(b"\r\nconnection: keep-alive\r")) > 0:
        return data[:at] + data[at + 24:], status, length
    return _hop_by_hop_cut(data, end), status, length


def _hop_by_hop_cut(data: bytes, end: int) -> bytes:
    """``data`` without its head's Connection: keep-alive and Keep-Alive lines."""
    kept = [line for line in data[:end].split(b"\r\n")
            if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join(kept) + data[end:]
