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
        fields = self.fields = rules.scan(self.headers, self.client.stripped)
        if self.version == "1.1" and not fields.host:
            raise Reject(400, "HTTP/1.1 request without Host header")
        if upgrade:
            self.upgrade = fields.upgrade
        self.req_framing, self.req_remaining = fields.framing, fields.length
        limit = self.site.config.limits.body_bytes
        if limit is not None and fields.framing == LENGTH and fields.length > limit:
            raise Reject(413, f"request body larger than limits.body_bytes ({limit})")

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
