"""gRPC calls as the balancer meets them on an HTTP/2 stream: which requests
are gRPC, their deadline (``grpc-timeout``), and the balancer's own answers
written as a gRPC client reads them (a trailers-only response: HTTP 200,
``grpc-status`` and ``grpc-message``). No I/O. The status table is in
docs/http2.md.
"""

from __future__ import annotations

import re

from ..upstream.outcome import ErrorKind

Headers = list[tuple[bytes, bytes]]

OK, UNKNOWN, DEADLINE_EXCEEDED, PERMISSION_DENIED, RESOURCE_EXHAUSTED = 0, 2, 4, 7, 8
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 12, 13, 14, 16

# The balancer's answers by HTTP status (gRPC's HTTP-to-status table, with
# 413 and 431 as RESOURCE_EXHAUSTED and 408 as DEADLINE_EXCEEDED).
_BY_STATUS = {400: INTERNAL, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED, 404: UNIMPLEMENTED,
              405: UNIMPLEMENTED, 408: DEADLINE_EXCEEDED, 413: RESOURCE_EXHAUSTED,
              429: UNAVAILABLE, 431: RESOURCE_EXHAUSTED, 502: UNAVAILABLE, 503: UNAVAILABLE,
              504: DEADLINE_EXCEEDED}
_TIMEOUT = re.compile(rb"(\d{1,8})([HMSmun])").fullmatch
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_PLAIN = re.compile(rb"[^\x20-\x24\x26-\x7e]")     # what grpc-message percent-encodes


def is_grpc(content_type: bytes) -> bool:
    """application/grpc, alone or with a subtype (+proto) or parameters; not
    gRPC-Web, which is its own protocol."""
    return content_type == b"application/grpc" or content_type[:17] in (
        b"application/grpc+", b"application/grpc;")


def status_for(http_status: int, kind: ErrorKind) -> int:
    if http_status == 504 and kind is ErrorKind.CONNECT_TIMEOUT:
        return UNAVAILABLE       # no backend reached in time: another may answer
    return _BY_STATUS.get(http_status, UNKNOWN)


def trailers_only(http_status: int, kind: ErrorKind, message: str) -> Headers:
    """The balancer's answer to a gRPC call, as one HEADERS frame that ends it."""
    text = _PLAIN.sub(lambda found: b"%%%02X" % found.group()[0], message.encode())
    return [(b":status", b"200"), (b"content-type", b"application/grpc"),
            (b"grpc-status", b"%d" % status_for(http_status, kind)), (b"grpc-message", text)]


def timeout(value: bytes) -> float | None:
    """A grpc-timeout in seconds; None when it is not one."""
    found = _TIMEOUT(value)
    return int(found.group(1)) * _UNITS[found.group(2)] if found else None


def encode_timeout(seconds: float) -> bytes:
    """Seconds as a grpc-timeout, to the millisecond (at least 1m)."""
    milliseconds = max(1, int(seconds * 1000))
    if milliseconds < 10**8:
        return b"%dm" % milliseconds
    return b"%dS" % min(int(seconds), 10**8 - 1)
