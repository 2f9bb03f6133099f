"""Certificates made by the tests with openssl: a CA and what it signs."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class CA:
    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key, self.pem = directory / f"{name}.key", directory / f"{name}.pem"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", f"/CN={name}", "-keyout", str(self.key), "-out", str(self.pem))

    def issue(self, name: str, subject: str, extension: str, days: int = 2) -> tuple[str, str]:
        """(certificate, key) files for ``subject`` with one X.509 extension line,
        e.g. ``subjectAltName=DNS:a.test`` or ``extendedKeyUsage=clientAuth``."""
        key, csr, ext = (self.dir / f"{name}.{s}" for s in ("key", "csr", "ext"))
        pem = self.dir / f"{name}.pem"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", str(key), "-out", str(csr))
        ext.write_text(extension + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.pem), "-CAkey", str(self.key),
                 "-CAcreateserial", "-days", str(days), "-extfile", str(ext), "-out", str(pem))
        return str(pem), str(key)
