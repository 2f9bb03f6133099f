"""The common response head read with a few C-level passes instead of a
parser callback per header: a final (2xx-5xx) response with one
Content-Length, no Transfer-Encoding or other hop-by-hop header but a
Connection header naming nothing but keep-alive or close, every line well
formed. Anything else returns None and goes to httptools, so this path never
decides a case the parser would judge differently: it accepts a subset of
what the parser accepts, and hands the client the head rules.scan and
rules.response_head would have made.
"""

from __future__ import annotations

import re

# RFC 9110 token, field value (no CR, LF, NUL or other controls but HT).
_LINE = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n"
_HEAD = re.compile(rb"HTTP/1\.([01]) ([2-5][0-9][0-9]) ([\t\x20-\x7e\x80-\xff]*)\r\n((?:"
                   + _LINE + rb")*)\r\n")
# Headers the full path would drop or act on, other than Connection.
_RARE = re.compile(rb"\r\n(?:keep-alive|te[\t ]*:|trailer|upgrade|x-forwarded-|proxy-|"
                   rb"transfer-encoding)")
_TOKENS = frozenset({b"keep-alive", b"close", b""})


class QuickHead:
    __slots__ = ("status", "reason", "lines", "length", "length_value", "keep_alive", "end")

    def __init__(self, status: int, reason: bytes, lines: bytes, length_value: bytes,
                 keep_alive: bool, end: int) -> None:
        self.status, self.reason, self.lines = status, reason, lines
        self.length_value, self.length = length_value, int(length_value)
        self.keep_alive = keep_alive      # the backend lets the connection be reused
        self.end = end                    # where the body starts in the bytes read


def _line(lower: bytes, name: bytes) -> tuple[int, int]:
    """Start and end (after its CRLF) of the one line with this name, (-1, 0)
    when there is none, (-2, 0) when there are several."""
    start = lower.find(name)
    if start < 0:
        return -1, 0
    if lower.find(name, start + 1) >= 0:
        return -2, 0
    return start, lower.index(b"\r\n", start + 2)


def response_head(data: bytes) -> QuickHead | None:
    match = _HEAD.match(data)
    if match is None:
        return None
    status = int(match[2])
    block = b"\r\n" + match[4]               # each line now starts with CRLF
    lower = block.lower()
    if status in (204, 304) or _RARE.search(lower):
        return None
    start, end = _line(lower, b"\r\ncontent-length:")
    if start < 0 or lower.count(b"content-length") != 1:
        return None
    length = lower[start + 17:end].strip(b" \t")
    if not length.isdigit() or len(length) > 15:
        return None
    block = block[:start] + block[end:]
    lower = lower[:start] + lower[end:]
    start, end = _line(lower, b"\r\nconnection:")
    if start == -2 or lower.count(b"connection") != (start >= 0):
        return None
    tokens = {t.strip(b" \t") for t in lower[start + 13:end].split(b",")} if start >= 0 else set()
    if not tokens <= _TOKENS:
        return None                       # it names headers to drop: the full path
    if start >= 0:
        block = block[:start] + block[end:]
    keep_alive = b"close" not in tokens if match[1] == b"1" else b"keep-alive" in tokens
    return QuickHead(status, match[3], block[2:], length, keep_alive, match.end())
