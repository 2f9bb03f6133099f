"""The listener's SSL contexts: one per certificate, with the configured
versions, ciphers, ALPN and client verification. The context a connection
starts with only reads the ClientHello; its SNI callback moves the connection
to the context of the certificate that fits (names.py), so replacing the set
(a reload) changes what every new handshake gets and none in progress."""

from __future__ import annotations

import ssl
from typing import Callable

from ..config.schema import BackendTlsSettings, ListenerTlsSettings
from .certificates import CertificateInfo, read
from .names import NameIndex

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def server_context(settings: ListenerTlsSettings, cert: str | None = None,
                   key: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[settings.min_version]
    context.set_ciphers(settings.ciphers)
    context.set_alpn_protocols(settings.alpn)
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if cert is not None:
        context.load_cert_chain(cert, key)
    if settings.client_ca:
        context.load_verify_locations(settings.client_ca)
    context.verify_mode = VERIFY[settings.verify]
    return context


def backend_context(settings: BackendTlsSettings, protocol: str = "http1") -> ssl.SSLContext:
    """For connections and probes to a group's backends, offering by ALPN
    the group's ``protocol`` (http1 or h2) alone."""
    context = ssl.create_default_context(cafile=settings.ca)
    context.minimum_version = VERSIONS[settings.min_version]
    context.set_alpn_protocols(["h2" if protocol == "h2" else "http/1.1"])
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def front_context(settings: ListenerTlsSettings) -> ssl.SSLContext:
    """The context handshakes start in. OpenSSL keeps session ticket keys per
    context and encrypts tickets with the starting one's: made once before the
    workers fork, its keys are the same in all of them (as nginx does)."""
    return server_context(settings)


class ListenerContexts:
    """What the listener's TLS uses now; ``load`` replaces it whole."""

    def __init__(self, settings: ListenerTlsSettings, front: ssl.SSLContext | None = None,
                 prepare: Callable[[ssl.SSLContext], None] | None = None) -> None:
        """``prepare``: applied to every context made (kernel TLS's key log)."""
        self.front = front or front_context(settings)
        self.front.sni_callback = self._choose
        self.prepare = prepare
        if prepare is not None:
            prepare(self.front)
        self.load(settings)

    def load(self, settings: ListenerTlsSettings) -> None:
        """Build every context first: a file that fails raises and changes nothing."""
        contexts = [server_context(settings, c.cert, c.key) for c in settings.certificates]
        if self.prepare is not None:
            for context in contexts:
                self.prepare(context)
        infos = [read(c.cert) for c in settings.certificates]
        self.settings, self.contexts, self.infos = settings, contexts, infos
        self.index = NameIndex(info.names for info in infos)

    def _choose(self, ssl_object: ssl.SSLObject, server_name: str | None,
                _: ssl.SSLContext) -> None:
        ssl_object.context = self.contexts[self.index.pick(server_name)]
        ssl_object.sni = server_name  # type: ignore[attr-defined]  # for the access log (SSLObject keeps a __dict__)

    def certificates(self) -> list[CertificateInfo]:
        return list(self.infos)
