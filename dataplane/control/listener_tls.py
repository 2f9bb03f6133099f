"""The listener's TLS as the control process keeps it (docs/tls.md): the
context every handshake starts in (made before the workers fork), the checked
private copies of the certificate files, and the session ticket keys."""

from __future__ import annotations

import asyncio
import datetime
import os
from typing import Any

from ..config import Config
from ..config.errors import ConfigError
from ..tls import kernel_tls
from ..tls.contexts import front_context
from .certificates import CertificateStore
from .state import State
from .tickets import TicketRotation


class ListenerTls:
    def __init__(self, config: Config) -> None:
        self.settings = config.balancer.tls
        if self.settings is not None and self.settings.ktls == "on" \
                and (reason := kernel_tls.missing()) is not None:
            raise ConfigError(f"balancer.tls.ktls: on, but {reason}; set auto or off")
        self.front = front_context(self.settings) if self.settings is not None else None
        self.near = os.path.dirname(config.admin.socket)
        self.store: CertificateStore | None = None
        self.rotation: TicketRotation | None = None

    def copy(self, config: Config) -> bytes:
        """The certificate files of ``config``, copied where workers read them
        (what the snapshot carries); raises CertificateError and keeps the last."""
        if config.balancer.tls is None:
            return b""
        if self.store is None:
            self.store = CertificateStore(self.near)
        return self.store.publish(config)

    def start(self, state: State, loop: asyncio.AbstractEventLoop) -> None:
        if self.settings is not None:
            self.rotation = TicketRotation(state, self.settings.ticket_rotation)
            self.rotation.start(loop)

    def describe(self) -> list[dict[str, Any]] | None:
        if self.store is None:
            return None
        return self.store.describe(datetime.datetime.now(datetime.timezone.utc))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
