"""Who is at the other end of a client connection, and what the backend is
told of it: the addresses a trusted balancer's PROXY header names
(``accept_proxy``) or the socket's; the lines every request of the
connection carries (X-Forwarded-For and -Proto, a verified client
certificate's subject); and, over TLS, what the handshake settled, for the
access log. No I/O beyond asking the socket its addresses."""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING

from ..config.schema import BalancerSettings, ListenerTlsSettings
from ..proxyproto.header import Addresses, parse
from ..tls.certificates import subject as certificate_subject

if TYPE_CHECKING:
    from ..logs.access_lines import AccessLog


class ClientIdentity:
    """One client connection's identity: what its requests say of it to the
    backend and in the access log. With ``accept_proxy`` it is the PROXY
    header's client, read from the connection's first bytes."""
    __slots__ = ("peer", "port", "tail", "before_id", "after_id", "id_header", "log_prefix", "forwarded", "stripped", "proxied",
                 "preamble", "tls", "access", "protocol")

    def __init__(self, peer: str, tls: ssl.SSLObject | None, settings: BalancerSettings,
                 access: "AccessLog | None", port: int = 0, id_header: bytes = b"") -> None:
        self.tls, self.access, self.port = tls, access, port
        self.id_header = id_header       # request_id.header, when IDs are on
        self.protocol = "http/1.1"     # or h2 (over TLS), h2c: the access line's "proto"
        self.forwarded, self.stripped = forwarding(tls, settings.tls)
        self.proxied: Addresses | None = None
        # accept_proxy: the PROXY header's bytes so far; None once read (or without it).
        self.preamble: bytes | None = b"" if settings.accept_proxy else None
        self._identify(peer.encode())

    def _identify(self, peer: bytes) -> None:
        self.peer = peer             # as X-Forwarded-For names it
        # The proxy's own lines and the blank line that ends a head upstream.
        self.tail = b"X-Forwarded-For: %b\r\n%b\r\n" % (peer, self.forwarded)
        # The same around a request's ID (the lane adds its line after X-Forwarded-For).
        self.before_id = b"X-Forwarded-For: %b\r\n%b: " % (peer, self.id_header)
        self.after_id = b"\r\n%b\r\n" % self.forwarded
        self.log_prefix = self.access.prefix(peer, self.protocol, tls_fields(self.tls),
                                             self.port) if self.access is not None else b""

    def speaks(self, protocol: str) -> None:
        """The connection turned out to speak ``protocol`` (h2, h2c)."""
        self.protocol = protocol
        self._identify(self.peer)

    def after_preamble(self, data: bytes) -> bytes | None:
        """accept_proxy: collect and read the PROXY header; what follows it,
        or None while it is incomplete. Raises ProxyError for a bad one."""
        data = (self.preamble or b"") + data
        read = parse(data)
        if read is None:
            self.preamble = data
            return None
        addresses, size = read
        self.preamble = None
        if addresses is not None:
            self.proxied = addresses
            self.port = addresses.src_port
            self._identify(addresses.src.encode())
        return data[size:]

    def addresses(self, sock: socket.socket) -> Addresses:
        """Who the client is and what it connected to: as a trusted balancer's
        PROXY header said, or as the socket says."""
        if self.proxied is None:
            self.proxied = socket_addresses(sock)
        return self.proxied


def socket_addresses(sock: socket.socket) -> Addresses:
    (src, src_port, *_), (dst, dst_port, *_) = sock.getpeername(), sock.getsockname()
    return Addresses(src, src_port, dst, dst_port)


def forwarding(tls: ssl.SSLObject | None, settings: ListenerTlsSettings | None
               ) -> tuple[bytes, frozenset[bytes]]:
    """The header lines every request of a connection gets (X-Forwarded-Proto;
    the verified client certificate's subject in ``client_subject_header``),
    and the header names taken from the client's requests (that one)."""
    if tls is None:
        return b"X-Forwarded-Proto: http\r\n", frozenset()
    lines = b"X-Forwarded-Proto: https\r\n"
    name = settings.client_subject_header if settings is not None else None
    if name is None:
        return lines, frozenset()
    # A certificate's text never ends a header line early.
    certificate = tls.getpeercert(binary_form=True)
    subject = certificate_subject(certificate) if certificate else ""
    subject = subject.replace("\r", "").replace("\n", "")
    if subject:
        lines += b"%b: %b\r\n" % (name.encode(), subject.encode("latin-1", "replace"))
    return lines, frozenset({name.lower().encode()})


def tls_fields(tls: ssl.SSLObject | None) -> dict[str, str | None] | None:
    """TLS version, cipher and the name the client asked for (SNI), for the
    access lines (made once per connection)."""
    if tls is None:
        return None
    cipher = tls.cipher()
    return {"tls": tls.version(), "cipher": cipher[0] if cipher else None,
            "sni": getattr(tls, "sni", None)}
