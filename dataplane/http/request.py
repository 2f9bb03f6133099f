"""The request half of an Exchange: the head checked, the body passed on
(re-chunked, or spliced in the kernel when large), held back while no
connection is attached. A mixin: the Exchange's slots hold its state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..proxyproto.header import encode
from . import rules
from .rules import CHUNKED, LENGTH, Reject

if TYPE_CHECKING:
    from ..site import Site
    from ..upstream.pool import UpstreamConnection
    from .client import ClientConnection

SPLICE_MIN = 256 * 1024   # bodies with at least this much left are spliced


class RequestSide:
    __slots__ = ()
    client: "ClientConnection"
    site: "Site"
    upstream: "UpstreamConnection | None"
    target: bytes
    headers: rules.Headers
    fields: rules.Fields | None
    version: str
    upgrade: bytes | None
    req_framing: int
    req_remaining: int
    request_complete: bool
    pending: list[bytes]
    pending_size: int
    bytes_in: int

    def request_sent(self) -> None:
        """The whole request is on its way (the Exchange arms the response deadline)."""
        raise NotImplementedError

    def inspect_request_headers(self, upgrade: bool) -> None:
        per_client = self.site.per_client
        if per_client is not None and not per_client.allow_request(self.client):
            raise Reject(429, "too many requests from this address (limits.per_client_rate)")
        fields = self.fields = rules.scan(self.headers, self.client.stripped)
        if self.version != "1.1" and self.version != "1.0":
            # httptools lets 0.9 and 2.0 through (it refuses 1.2 itself).
            raise Reject(400, f"HTTP/{self.version} is not HTTP/1.x")
        if fields.host != 1 and (fields.host or self.version == "1.1"):
            raise Reject(400, "more than one Host header" if fields.host else
                         "HTTP/1.1 request without Host header")
        if not fields.host:
            fields.lines += (b"Host: ", self._implied_authority(), b"\r\n")
        if fields.coding is not None and fields.coding.lower() != b"chunked":
            # Only chunked is read here (RFC 9112 section 6.1: 501 for the others).
            raise Reject(501, f"Transfer-Encoding {fields.coding.decode('latin-1')!r}")
        if upgrade:
            self.upgrade = fields.upgrade
        self.req_framing, self.req_remaining = fields.framing, fields.length
        if self.req_framing == CHUNKED and self.version == "1.0":
            # RFC 9112 section 6.1: its framing is faulty whatever it says.
            raise Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        limit = self.site.config.limits.body_bytes
        if limit is not None and fields.framing == LENGTH and fields.length > limit:
            raise Reject(413, f"request body larger than limits.body_bytes ({limit})")

    def _implied_authority(self) -> bytes:
        """An HTTP/1.0 request without Host goes upstream as HTTP/1.1, which needs
        one: the absolute-form target's authority, else the address the client
        reached (RFC 9112 section 3.3 rebuilds the target URI the same way)."""
        target = self.target
        if target[:7].lower() == b"http://":
            return target[7:].partition(b"/")[0]
        host, port = self.client.stream.shared_socket().getsockname()[:2]
        return f"[{host}]:{port}".encode() if ":" in host else f"{host}:{port}".encode()

    def request_body(self, body: bytes) -> None:
        self.bytes_in += len(body)
        if self.req_framing == CHUNKED:
            limit = self.site.config.limits.body_bytes
            if limit is not None and self.bytes_in > limit:
                raise Reject(413, f"request body larger than limits.body_bytes ({limit})")
            self._send(rules.chunk(body))
        else:
            self.req_remaining -= len(body)
            self._send(body)

    def request_end(self, trailers: rules.Headers) -> None:
        self.request_complete = True
        if self.req_framing == CHUNKED:
            self._send(rules.last_chunk(trailers))
        self.request_sent()

    def _send(self, data: bytes) -> None:
        if self.upstream is not None and self.client.is_active(self):
            self.upstream.stream.write(data)
        else:
            self.pending.append(data)
            self.pending_size += len(data)

    def proxy_preface(self, version: str) -> bytes:
        """The PROXY header for a backend connection made for this client:
        the client as a trusted balancer in front named it, or as connected."""
        return encode(version, self.client.addresses())

    def splice_request_body(self) -> bool:
        """Start splicing the rest of a large Content-Length body; True if started.
        Never while the parser is still handing over bytes it has read: those
        come first, and the count to splice is known only after them."""
        if (self.req_framing != LENGTH or self.request_complete or self.upstream is None
                or self.req_remaining < SPLICE_MIN or not self.client.splice_bodies
                or self.upstream.stream.tls is not None
                or not self.client.may_splice_request()):
            return False
        self.client.start_request_splice(self, self.upstream.stream, self.req_remaining)
        return True
