"""What a certificate file says: the names it covers, its issuer and expiry
(for SNI, ``lbctl tls`` and the warnings), read with ``cryptography``."""

from __future__ import annotations

import datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.x509.oid import NameOID

EXPIRY_WARNING = datetime.timedelta(days=14)


class CertificateInfo(NamedTuple):
    path: str
    names: list[str]         # DNS names of subjectAltName, else the subject's CN
    subject: str
    issuer: str
    not_after: datetime.datetime

    def expires_in(self, now: datetime.datetime) -> datetime.timedelta:
        return self.not_after - now


def subject(der: bytes | None) -> str:
    """A certificate's subject as RFC 4514 writes it (``CN=...,O=...``); "" for none."""
    return x509.load_der_x509_certificate(der).subject.rfc4514_string() if der else ""


def read(path: str) -> CertificateInfo:
    """The first certificate in a PEM file (the server's own; the chain follows)."""
    with open(path, "rb") as pem:
        cert = x509.load_pem_x509_certificate(pem.read())
    names: list[str | bytes]
    try:
        names = list(cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return CertificateInfo(path, [n if isinstance(n, str) else n.decode() for n in names], cert.subject.rfc4514_string(),
                           cert.issuer.rfc4514_string(), cert.not_valid_after_utc)
