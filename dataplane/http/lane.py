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

What one header line means to the lane depends on its bytes alone, and
clients and backends repeat their lines (user agents, accept headers,
server names), so the verdict on each line is kept: a line seen before
costs one dictionary lookup (``_Verdicts``, bounded).

Validation uses one llhttp parser per process for each direction, with no
callbacks: a read the lane accepts is one whole message, so the parser ends
every feed at a message boundary, ready for any connection's next one.
"""

from __future__ import annotations

from typing import TypeVar

import httptools

from .codec import CONTROL_BYTE

MAX_BODY = 64 * 1024     # a larger request body (rarely in one read) takes the general path
# A line's verdict: a Content-Length line holds its length (0 or more), else:
PLAIN = -1               # end to end, in the canonical form: it travels as it is
CUT = -2                 # hop-by-hop and harmless: removed (Connection: keep-alive...)
OFF = -3                 # the proxy acts on it, or it is not canonical: general path
_REQUEST_OFF = frozenset({b"transfer-encoding", b"upgrade", b"keep-alive", b"te", b"trailer",
                          b"expect", b"host", b"x-forwarded-for", b"x-forwarded-proto"})
_RESPONSE_OFF = frozenset({b"transfer-encoding", b"upgrade", b"te", b"trailer",
                           b"x-forwarded-for", b"x-forwarded-proto"})
_VERDICTS_KEPT = 4096    # lines remembered per direction
_CONNECTION = b"Connection: keep-alive"
_CONNECTION_LINE = b"\r\n" + _CONNECTION + b"\r\n"


class _Verdicts(dict[bytes, int]):
    """Header lines seen, and what the lane makes of each (bounded: a flood
    of distinct lines only empties it)."""

    def __init__(self, off: frozenset[bytes], cut: frozenset[bytes]) -> None:
        super().__init__()
        self.off, self.cut = off, cut

    def __missing__(self, line: bytes) -> int:
        if len(self) >= _VERDICTS_KEPT:
            self.clear()
        verdict = self[line] = self._judge(line)
        return verdict

    def _judge(self, line: bytes) -> int:
        name, colon, value = line.partition(b": ")
        if not colon or not value or value[0] in b" \t" or 58 in name:   # 58: ":"
            return OFF          # not "Name: value" as the codec writes it
        name = name.lower()
        if name == b"content-length":
            return int(value) if value.isdigit() else OFF
        if name == b"connection":
            return CUT if value.lower() == b"keep-alive" else OFF
        if name in self.cut:
            return CUT
        if name in self.off or name.startswith(b"proxy-"):
            return OFF
        return PLAIN


# What the lane made of a whole head it has seen, byte for byte: a client's
# repeated requests and a backend's repeated answers (the same head until its
# Date changes) then cost one lookup, llhttp's check included.
_Request = tuple[bytes, bytes, bytes, bytes, int, int] | tuple[()]
_Response = tuple[bytes | None, int, int] | tuple[()]
_V = TypeVar("_V", _Request, _Response)
_HEADS_KEPT = 512        # heads remembered per direction
_HEAD_KEPT_BYTES = 2048  # a longer head is judged line by line each time


class _Heads(dict[bytes, _V]):
    """Heads (up to the blank line) and their verdicts, bounded: at most
    _HEADS_KEPT of _HEAD_KEPT_BYTES each, then it starts afresh."""

    def keep(self, data: bytes, end: int, verdict: _V) -> _V:
        """Remember ``verdict`` for the head of ``data`` (it ends at ``end``)."""
        if end < _HEAD_KEPT_BYTES:
            if len(self) >= _HEADS_KEPT:
                self.clear()
            self[data[:end + 4]] = verdict
        return verdict


_request_lines = _Verdicts(_REQUEST_OFF, frozenset())
_response_lines = _Verdicts(_RESPONSE_OFF, frozenset({b"keep-alive"}))
_request_heads: _Heads[_Request] = _Heads()
_response_heads: _Heads[_Response] = _Heads()


class _NoCallbacks:
    """llhttp then only validates."""


class _Validators:
    __slots__ = ("request", "response")

    def __init__(self) -> None:
        self.request = httptools.HttpRequestParser(_NoCallbacks())
        self.response = httptools.HttpResponseParser(_NoCallbacks())


_valid = _Validators()


def _judged(lines: list[bytes], verdicts: _Verdicts) -> tuple[int, int] | None:
    """How many of ``lines`` the lane cuts, and the length their one
    Content-Length line states (-1: none); None when a line is off the lane
    or a second one states a length."""
    cuts = 0
    length = -1
    for line in lines:
        verdict = verdicts[line]
        if verdict == PLAIN:
            continue
        if verdict == CUT:
            cuts += 1
        elif verdict >= 0 and length < 0:
            length = verdict
        else:
            return None
    return cuts, length


def takes_off(name: bytes) -> None:
    """Requests with a header named ``name`` (lower case) leave the lane: the
    request ID's, which the general path replaces or keeps, and a caller's
    trace context. Set once per worker, before its first request."""
    _request_lines.off = _request_lines.off | {name}
    _request_lines.clear()
    _request_heads.clear()


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
    whole = end + 4 == len(data)
    known = _request_heads.get(data if whole else data[:end + 4])
    if known is None:
        known = _judge_request(data, end)
    if not known:
        return None
    head, method, target, authority, length, count = known
    if count > max_headers or end + 4 + length != len(data) or length > max_body:
        return None
    return head + tail, method, target, authority, length


def _judge_request(data: bytes, end: int) -> _Request:
    """What the lane makes of the head of ``data`` (remembered when the
    verdict rests on the head alone): what to send of it, method, target,
    Host, body length and header count; () when it is off the lane."""
    space = data.find(b" ")
    version = data.find(b" ", space + 1)       # a target holds no space (llhttp checks)
    if not data.startswith(b" HTTP/1.1\r\nHost: ", version):
        return _request_heads.keep(data, end, ())
    at = version + 17
    host_end = data.find(b"\r\n", at)
    if data[at] in b" \t":
        return _request_heads.keep(data, end, ())
    head = data[:end + 2]
    length = 0
    count = 1
    if host_end < end:
        lines = data[host_end + 2:end].split(b"\r\n")
        count += len(lines)
        judged = _judged(lines, _request_lines)
        if judged is None:
            return _request_heads.keep(data, end, ())
        cuts, stated = judged
        if stated > 0:
            length = stated
        if cuts:
            if cuts > 1:
                return _request_heads.keep(data, end, ())
            head = _without_connection(head)
    method = data[:space]
    if method == b"HEAD" or method == b"CONNECT":
        return _request_heads.keep(data, end, ())
    if end + 4 + length != len(data) or length > MAX_BODY:
        return ()              # llhttp can judge only a whole message: not remembered
    try:
        _valid.request.feed_data(data)
    except httptools.HttpParserError:
        _valid.request = httptools.HttpRequestParser(_NoCallbacks())
        return _request_heads.keep(data, end, ())
    return _request_heads.keep(data, end, (head, method, data[space + 1:version],
                                           data[at:host_end], length, count))


def _without_connection(head: bytes) -> bytes:
    """``head`` without its Connection: keep-alive line (as browsers write
    it, else in whatever case it came)."""
    cut = head.replace(_CONNECTION_LINE, b"\r\n", 1)
    if len(cut) < len(head):
        return cut
    at = head.lower().find(b"\r\nconnection: keep-alive\r\n")
    return head[:at] + head[at + 24:]


_OK = b"HTTP/1.1 200 OK\r\n"
_STATUS = {b"%d" % code: code for code in range(200, 600) if code not in (204, 304)}


def simple_response(data: bytes) -> tuple[bytes, int, int] | None:
    """What the client gets for a response read whole in ``data``, its status
    and its body length; None when the lane cannot take it."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    known = _response_heads.get(data[:end + 4])
    if known is None:
        known = _judge_response(data, end)
    if not known:
        return None
    head, status, length = known
    if end + 4 + length != len(data):
        return None
    return data if head is None else head + data[end + 4:], status, length


def _judge_response(data: bytes, end: int) -> _Response:
    """What the lane makes of the head of ``data`` (remembered when the
    verdict rests on the head alone): the head to send instead (None: as
    it came), status and body length; () when it is off the lane."""
    if data.startswith(_OK):
        status, line = 200, 15
    elif data.startswith(b"HTTP/1.1 ") and data[12] == 32 and data[9:12] in _STATUS:
        status, line = _STATUS[data[9:12]], data.find(b"\r\n")
        if CONTROL_BYTE(data, 13, line) is not None:
            return _response_heads.keep(data, end, ())
    else:
        return _response_heads.keep(data, end, ())
    lines = data[line + 2:end].split(b"\r\n")
    judged = _judged(lines, _response_lines)
    if judged is None or judged[1] < 0:
        return _response_heads.keep(data, end, ())
    cuts, length = judged
    if end + 4 + length != len(data):
        return ()              # llhttp can judge only a whole message: not remembered
    try:
        _valid.response.feed_data(data)
    except httptools.HttpParserError:
        _valid.response = httptools.HttpResponseParser(_NoCallbacks())
        return _response_heads.keep(data, end, ())
    head: bytes | None = None
    if cuts == 1 and _CONNECTION in lines:     # nginx's, Node's: cut where it stands
        head = data[:end + 4].replace(_CONNECTION_LINE, b"\r\n", 1)
    elif cuts:
        kept = [header for header in lines if _response_lines[header] != CUT]
        head = b"\r\n".join([data[:line], *kept, b"\r\n"])
    return _response_heads.keep(data, end, (head, status, length))
