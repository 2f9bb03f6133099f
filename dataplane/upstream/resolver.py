"""Host names resolved off the hot path.

A host that does not resolve is not a configuration error: it stays down and
is retried every ``balancer.resolve_interval`` (default 30s).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Callable, cast

import structlog

from .host import Address, Host

log = structlog.get_logger("l7lb.resolver")


def literal_address(host: str, port: int) -> tuple[int, Address] | None:
    """The sockaddr of an IP literal, without any lookup; None for a name."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if ip.version == 6:
        return socket.AF_INET6, (str(ip), port, 0, 0)
    return socket.AF_INET, (str(ip), port)


class Resolver:
    """Keeps every named backend's address current, marking it down when it fails."""

    def __init__(self, loop: asyncio.AbstractEventLoop, backends: list[Host],
                 interval: float, on_change: Callable[[], None]) -> None:
        self.loop = loop
        self.backends = backends
        self.interval = interval
        self.on_change = on_change
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Resolve every backend once (so the first requests find them), then keep
        named ones fresh in the background."""
        named = self._assign_literals()
        if named:
            await asyncio.gather(*(self._resolve(b) for b in named))
        self.on_change()
        self._schedule(named, first_delay=self.interval)

    def refresh(self) -> None:
        """The backend list changed: literals take effect now, names soon."""
        named = self._assign_literals()
        self.on_change()
        self._schedule(named, first_delay=0.0)

    def _assign_literals(self) -> list[Host]:
        named = []
        for backend in self.backends:
            literal = literal_address(backend.host, backend.port)
            if literal:
                backend.set_address(*literal)
            else:
                named.append(backend)
        return named

    def _schedule(self, named: list[Host], first_delay: float) -> None:
        self.stop()
        if named:
            self._task = self.loop.create_task(self._refresh_forever(named, first_delay))

    def stop(self) -> None:
        if self._task:
            self._task.cancel()
            self._task = None

    async def _refresh_forever(self, named: list[Host], delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            delay = self.interval
            results = await asyncio.gather(*(self._resolve(b) for b in named))
            if any(results):
                self.on_change()

    async def _resolve(self, backend: Host) -> bool:
        """Resolve one host; return True when its address changed."""
        try:
            infos = await self.loop.getaddrinfo(backend.host, backend.port,
                                                type=socket.SOCK_STREAM)
            family: int = infos[0][0]
            # A TCP lookup gives IPv4 or IPv6 sockaddrs only.
            address: Address | None = cast(Address, infos[0][4])
        except (OSError, IndexError) as exc:
            log.warning("backend unresolved, kept down", backend=backend.name,
                        error=str(exc), retry_in=self.interval)
            family, address = backend.family, None
        changed = address != backend.address
        if changed and address is not None:
            log.info("backend resolved", backend=backend.name, address=address[0])
        backend.set_address(family, address)
        return changed
