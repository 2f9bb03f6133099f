"""The listener's TLS in a worker: SSL contexts made from the control
process's checked copies of the certificate files (the first ones before
listening, later ones for every new handshake; a failure keeps the old
ones), and the session ticket keys every worker shares."""

from __future__ import annotations

import ssl
from typing import Callable

import msgspec
import structlog

from ..config import decode_certificates
from ..config.schema import ListenerTlsSettings
from ..tls.contexts import ListenerContexts
from ..tls.tickets import TicketKeys, split_keys

log = structlog.get_logger("l7lb.worker")


class WorkerTls:
    def __init__(self, settings: ListenerTlsSettings | None, front: ssl.SSLContext | None,
                 prepare: Callable[[ssl.SSLContext], None] | None) -> None:
        """``front``: the context every handshake starts in, made by the control
        process before forking (so every worker has its ticket keys);
        ``prepare``: applied to every context made (kernel TLS's key log)."""
        self.settings, self.first, self.prepare = settings, front, prepare
        self.contexts: ListenerContexts | None = None   # from the first certificates
        self.certificates = b""     # the snapshot's certificate files last loaded
        self.tickets: TicketKeys | None = None

    def front(self) -> ssl.SSLContext:
        if self.contexts is None:
            raise RuntimeError("the first snapshot brought no certificates")
        return self.contexts.front

    def apply(self, certificates: bytes, tickets: bytes) -> None:
        """A snapshot's certificate copies and ticket keys, when they changed."""
        if certificates and certificates != self.certificates:
            self._load(certificates)
        if tickets and self.contexts is not None:
            self._use_tickets(tickets)

    def _load(self, raw: bytes) -> None:
        self.certificates = raw
        if self.settings is None:
            return                         # sent only to a TLS listener
        settings = msgspec.structs.replace(self.settings, certificates=decode_certificates(raw))
        if self.contexts is None:
            self.contexts = ListenerContexts(settings, self.first, self.prepare)
            return
        try:
            self.contexts.load(settings)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("certificates not reloaded; the old ones stay", error=str(exc))
            return
        log.info("certificates reloaded", files=[c.source for c in settings.certificates])

    def _use_tickets(self, raw: bytes) -> None:
        """The control process's session ticket keys (the current one first)."""
        keys = split_keys(raw)
        if self.tickets is not None:
            self.tickets.keys = keys
            return
        assert self.contexts is not None   # the caller checked
        try:
            self.tickets = TicketKeys(self.contexts.front, keys)
        except (OSError, AttributeError) as exc:     # no such OpenSSL: its own keys then
            log.warning("session ticket keys not installed; OpenSSL's own are used",
                        error=str(exc))
            self.tickets = None
