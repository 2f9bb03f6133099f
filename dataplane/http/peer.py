"""Who is at the other end of a client connection: the addresses a trusted
balancer's PROXY header names (``accept_proxy``), or the socket's; and, over
TLS, what the handshake settled, for the access log. A mixin of
ClientConnection; its slots hold the state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from ..config.schema import ListenerTls
from ..proxyproto.header import Addresses, ProxyError, parse
from ..tls.certificates import subject as certificate_subject

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

    def forwarding(self, settings: ListenerTls | None) -> tuple[bytes, frozenset[bytes]]:
        """The header lines every request of this connection gets (X-Forwarded-Proto;
        the verified client certificate's subject in ``client_subject_header``),
        and the header names taken from the client's requests (that one)."""
        if self.stream.tls is None:
            return b"X-Forwarded-Proto: http\r\n", frozenset()
        lines = b"X-Forwarded-Proto: https\r\n"
        name = settings.client_subject_header if settings is not None else None
        if name is None:
            return lines, frozenset()
        # A certificate's text never ends a header line early.
        subject = certificate_subject(self.stream.tls.getpeercert(binary_form=True))
        subject = subject.replace("\r", "").replace("\n", "")
        if subject:
            lines += b"%b: %b\r\n" % (name.encode(), subject.encode("latin-1", "replace"))
        return lines, frozenset({name.lower().encode()})

    def tls_fields(self) -> dict | None:
        """TLS version, cipher and the name the client asked for (SNI), for the
        access lines (made once per connection)."""
        tls = self.stream.tls
        if tls is None:
            return None
        cipher = tls.cipher()
        return {"tls": tls.version(), "cipher": cipher[0] if cipher else None,
                "sni": getattr(tls, "sni", None)}
