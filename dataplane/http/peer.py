"""Who is at the other end of a client connection: the addresses a trusted
balancer's PROXY header names (``accept_proxy``), or the socket's; and, over
TLS, what the handshake settled, for the access log. A mixin of
ClientConnection; its slots hold the state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from ..proxyproto.header import Addresses, ProxyError, parse

if TYPE_CHECKING:
    from ..io.stream import Stream
    from ..site import Site

log = structlog.get_logger("l7lb.http")


class Peer:
    __slots__ = ()
    site: "Site"
    stream: "Stream"
    peer: bytes
    proxied: Addresses | None
    preamble: bytes | None

    def abort(self) -> None:
        raise NotImplementedError

    def addresses(self) -> Addresses:
        """Who the client is and what it connected to: as a trusted balancer's
        PROXY header said, or as the socket says."""
        if self.proxied is None:
            sock = self.stream.sock
            (src, src_port, *_), (dst, dst_port, *_) = sock.getpeername(), sock.getsockname()
            self.proxied = Addresses(src, src_port, dst, dst_port)
        return self.proxied

    def _proxy_header(self, data: bytes) -> bytes | None:
        """accept_proxy: collect and read the PROXY header; what follows it, or
        None while it is incomplete (a bad one closes the connection)."""
        data = self.preamble + data
        try:
            read = parse(data)
        except ProxyError as exc:
            log.info("connection refused", client=self.peer.decode(), reason=str(exc))
            self.site.stats.untrusted += 1
            self.abort()
            return None
        if read is None:
            self.preamble = data
            return None
        addresses, size = read
        self.preamble = None
        if addresses is not None:
            self.proxied, self.peer = addresses, addresses.src.encode()
        return data[size:]

    def tls_fields(self) -> dict | None:
        """TLS version, cipher and the name the client asked for (SNI)."""
        tls = self.stream.tls
        if tls is None:
            return None
        cipher = tls.cipher()
        return {"tls": tls.version(), "cipher": cipher[0] if cipher else None,
                "sni": getattr(tls, "sni", None)}
