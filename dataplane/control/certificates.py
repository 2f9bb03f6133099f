"""The listener's certificates as the workers load them: private copies of
the operator's files, one directory per load, made by the control process
after it has checked that each pair loads. Workers (a restarted one too) read
only these copies, so a file that an operator replaces with a broken one
between a check and a worker's start cannot stop the balancer: the last good
copies stay in force until a reload accepts new ones."""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from typing import Any

import msgspec

from ..tls.certificates import EXPIRY_WARNING, read

from ..config import CertificateSettings, Config
from ..config.checks import certificate_problem

KEEP = 2      # generations kept: the one in force and the one before it


class CertificateError(Exception):
    """A certificate or key that does not load; the message names the file."""


class CertificateStore:
    def __init__(self, near: str) -> None:
        self.root = tempfile.mkdtemp(prefix="l7lb-tls-", dir=near)   # mode 0700
        self.generation = 0
        self.current: list[CertificateSettings] = []     # the copies in force

    def publish(self, config: Config) -> bytes:
        """Copy and check the listener's certificate files; what the snapshot
        carries (b"" without TLS). Raises CertificateError and keeps the last."""
        tls = config.balancer.tls
        if tls is None:
            return b""
        target = os.path.join(self.root, str(self.generation + 1))
        os.makedirs(target, mode=0o700, exist_ok=True)
        copies = []
        for i, pair in enumerate(tls.certificates):
            cert, key = os.path.join(target, f"{i}.crt"), os.path.join(target, f"{i}.key")
            try:
                shutil.copyfile(pair.cert, cert)
                shutil.copyfile(pair.key, key)
            except OSError as exc:
                raise CertificateError(f"{exc.filename}: {exc.strerror}") from None
            problem = certificate_problem(cert, key)
            if problem:
                shutil.rmtree(target, ignore_errors=True)
                raise CertificateError(problem.replace(cert, pair.cert).replace(key, pair.key))
            copies.append(CertificateSettings(cert=cert, key=key, source=pair.cert))
        self.generation += 1
        self.current = copies
        self._forget_old()
        return msgspec.msgpack.encode({"generation": self.generation,
                                       "certificates": msgspec.to_builtins(copies)})

    def _forget_old(self) -> None:
        for name in os.listdir(self.root):
            if name.isdigit() and int(name) <= self.generation - KEEP:
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def describe(self, now: datetime.datetime) -> list[dict[str, Any]]:
        """What ``lbctl tls`` shows of each certificate in force."""
        rows = []
        for copy in self.current:
            info = read(copy.cert)
            left = info.expires_in(now)
            rows.append({"file": copy.source, "names": info.names, "subject": info.subject,
                         "issuer": info.issuer, "not_after": info.not_after.isoformat(),
                         "days_left": round(left.total_seconds() / 86400, 1),
                         "expiring": left < EXPIRY_WARNING})
        return rows

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
