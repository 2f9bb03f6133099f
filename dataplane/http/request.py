"""A request head as the general path parses it, and the checks it must pass
before it may go anywhere. No I/O."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Callable

from . import codec
from .codec import CHUNKED, LENGTH, Reject
from .request_id import fresh_line

if TYPE_CHECKING:
    from ..worker_view import WorkerView

TOO_MANY = "too many requests from this address (limits.per_client_rate)"

SPLICE_MIN = 256 * 1024   # request or response bodies with at least this much left are spliced


class RequestHead:
    """What the client's parser collected for one request (client.py)."""
    __slots__ = ("method", "target", "version", "headers", "fields", "keep_alive", "upgrade",
                 "framing", "length", "size")

    def __init__(self) -> None:
        self.method = b""
        self.target = b""
        self.version = "1.1"
        self.headers: codec.Headers = []
        self.fields = codec.Fields()
        self.keep_alive = True
        self.upgrade: bytes | None = None   # the protocol asked for (Upgrade + Connection: upgrade)
        self.framing = codec.NONE
        self.length = 0                     # Content-Length
        self.size = 0                       # bytes of the head, as the limit counts them


def admit(head: RequestHead, worker: "WorkerView", client: object, stripped: frozenset[bytes],
          upgrade: bool, reached: Callable[[], socket.socket]) -> None:
    """Refuse (raises Reject) a request the balancer answers itself before
    any backend: CONNECT, one over limits.per_client_rate from ``client``'s
    address (with a request ID), or a head ``check`` refuses."""
    if head.method == b"CONNECT":
        raise Reject(405, "CONNECT is not supported by a reverse proxy")
    per_client = worker.per_client
    if per_client is not None and not per_client.allow_request(client):
        raise Reject(429, TOO_MANY, fresh_line(worker.request_ids))
    check(head, stripped, upgrade, worker.config.limits.body_bytes, reached)


def check(head: RequestHead, stripped: frozenset[bytes], upgrade: bool,
          body_limit: int | None, reached: Callable[[], socket.socket]) -> None:
    """Read the head's fields and refuse what may not pass (raises Reject).
    ``stripped``: header names the proxy sets itself; ``upgrade``: llhttp
    saw an upgrade asked for; ``body_limit``: limits.body_bytes;
    ``reached``: the client's socket, for the address it connected to
    (asked only for an HTTP/1.0 request without Host)."""
    fields = head.fields = codec.scan(head.headers, stripped)
    version = head.version
    if version != "1.1" and version != "1.0":
        # httptools lets 0.9 and 2.0 through (it refuses 1.2 itself).
        raise Reject(400, f"HTTP/{version} is not HTTP/1.x")
    if fields.host != 1 and (fields.host or version == "1.1"):
        raise Reject(400, "more than one Host header" if fields.host else
                     "HTTP/1.1 request without Host header")
    if not fields.host:
        fields.lines += (b"Host: ", implied_authority(head.target, reached), b"\r\n")
    if fields.coding is not None and fields.coding.lower() != b"chunked":
        # Only chunked is read here (RFC 9112 section 6.1: 501 for the others).
        raise Reject(501, f"Transfer-Encoding {fields.coding.decode('latin-1')!r}")
    if upgrade:
        head.upgrade = fields.upgrade
    head.framing, head.length = fields.framing, fields.length
    if head.framing == CHUNKED and version == "1.0":
        # RFC 9112 section 6.1: its framing is faulty whatever it says.
        raise Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
    if body_limit is not None and fields.framing == LENGTH and fields.length > body_limit:
        raise Reject(413, f"request body larger than limits.body_bytes ({body_limit})")


def implied_authority(target: bytes, reached: Callable[[], socket.socket]) -> bytes:
    """An HTTP/1.0 request without Host goes upstream as HTTP/1.1, which needs
    one: the absolute-form target's authority, else the address the client
    reached (RFC 9112 section 3.3 rebuilds the target URI the same way)."""
    if target[:7].lower() == b"http://":
        return target[7:].partition(b"/")[0]
    host, port = reached().getsockname()[:2]
    return f"[{host}]:{port}".encode() if ":" in host else f"{host}:{port}".encode()
