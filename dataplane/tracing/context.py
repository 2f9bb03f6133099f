"""W3C Trace Context (``traceparent``), level 1: read a client's, write ours.
No I/O.

``traceparent: 00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>``;
lower-case hex, neither id all zeros, flag bit 0 = sampled. A later version
is read by its first four fields, as the recommendation says; version ff and
anything malformed count as absent (a new trace starts).
"""

from __future__ import annotations

from typing import NamedTuple

NAME = b"traceparent"
_HEX = frozenset(b"0123456789abcdef")
_ZERO_TRACE, _ZERO_SPAN = b"0" * 32, b"0" * 16


class Parent(NamedTuple):
    trace_id: bytes          # 32 hex digits
    span_id: bytes           # 16 hex digits: the caller's span
    sampled: bool


def parse(value: bytes) -> Parent | None:
    """The caller's context, or None when ``value`` is not a valid one."""
    value = value.strip()
    if len(value) < 55 or value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if not _hexadecimal(version + trace_id + span_id + flags) or version == b"ff":
        return None
    if version == b"00" and len(value) != 55 or len(value) > 55 and value[55:56] != b"-":
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return Parent(trace_id, span_id, bool(int(flags, 16) & 1))


def header(trace_id: bytes, span_id: bytes, sampled: bool) -> bytes:
    """Our ``traceparent`` line (CRLF-ended) naming ``span_id`` as the parent."""
    return b"traceparent: 00-%b-%b-%b\r\n" % (trace_id, span_id, b"01" if sampled else b"00")


def _hexadecimal(text: bytes) -> bool:
    return all(byte in _HEX for byte in text)
