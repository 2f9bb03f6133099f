"""Who is at the other end of a client connection, and what the backend is
told of it: the addresses a trusted balancer's PROXY header names
(``accept_proxy``) or the socket's; the lines every request of the
connection carries (X-Forwarded-Proto, a verified client certificate's
subject); and, over TLS, what the handshake settled, for the access log.
No I/O beyond asking the socket its addresses."""

from __future__ import annotations

import socket
import ssl

from ..config.schema import ListenerTlsSettings
from ..proxyproto.header import Addresses
from ..tls.certificates import subject as certificate_subject


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
