"""Runtime state of each backend: resolved address, weight, counters, idle pool.

Hosts are resolved off the hot path. A host that does not resolve is not a
configuration error: the backend stays down and is retried every
``balancer.health_check_interval``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import weakref
from collections import deque
from typing import TYPE_CHECKING

import structlog

from .config import Backend as BackendConfig

if TYPE_CHECKING:
    from .upstream import UpstreamConnection

log = structlog.get_logger("l7lb.backends")


class PoolStats:
    """Connection counters of one backend's pool in one worker."""

    __slots__ = ("opened", "reused", "closed_by_us", "closed_by_peer", "queue_timeouts",
                 "connect_failures", "retries")

    def __init__(self) -> None:
        self.opened = self.reused = self.closed_by_us = self.closed_by_peer = 0
        self.queue_timeouts = self.connect_failures = self.retries = 0


class Backend:
    __slots__ = ("name", "host", "port", "weight", "address", "family", "idle",
                 "active", "requests", "errors", "current_weight", "inflight", "waiting",
                 "pool", "state", "cc", "client_side", "sockets")

    def __init__(self, spec: BackendConfig) -> None:
        self.name = spec.name
        self.host = spec.host
        self.port = spec.port
        self.weight = spec.weight
        self.address: tuple | None = None   # sockaddr once resolved
        self.family = socket.AF_INET
        self.idle: list[UpstreamConnection] = []   # most recently used last
        self.active = 0        # open connections, busy or idle
        self.requests = 0
        self.errors = 0
        self.current_weight = 0   # smooth weighted round robin state
        self.inflight = 0         # requests or connections under way (this worker)
        self.waiting: deque = deque()   # exchanges queued at pool.max_active
        self.pool = PoolStats()
        self.state = "ready"      # drain and maint take no new requests
        self.cc = spec.congestion_control or ""    # in effect: "" is the kernel's default
        self.client_side = spec.client_side
        # Every open upstream socket, for the pacer and for TCP_INFO samples.
        self.sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    @property
    def available(self) -> bool:
        return self.address is not None and self.weight > 0 and self.state == "ready"

    def set_address(self, family: int, address: tuple | None) -> None:
        self.family, self.address = family, address


def literal_address(host: str, port: int) -> tuple[int, tuple] | None:
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

    def __init__(self, loop: asyncio.AbstractEventLoop, backends: list[Backend],
                 interval: float, on_change) -> None:
        self.loop = loop
        self.backends = backends
        self.interval = max(interval, 1.0)
        self.on_change = on_change
        self._task: asyncio.Task | None = None

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

    def _assign_literals(self) -> list[Backend]:
        named = []
        for backend in self.backends:
            literal = literal_address(backend.host, backend.port)
            if literal:
                backend.set_address(*literal)
            else:
                named.append(backend)
        return named

    def _schedule(self, named: list[Backend], first_delay: float) -> None:
        self.stop()
        if named:
            self._task = self.loop.create_task(self._refresh_forever(named, first_delay))

    def stop(self) -> None:
        if self._task:
            self._task.cancel()
            self._task = None

    async def _refresh_forever(self, named: list[Backend], delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            delay = self.interval
            results = await asyncio.gather(*(self._resolve(b) for b in named))
            if any(results):
                self.on_change()

    async def _resolve(self, backend: Backend) -> bool:
        """Resolve one host; return True when its address changed."""
        try:
            infos = await self.loop.getaddrinfo(backend.host, backend.port,
                                                type=socket.SOCK_STREAM)
            family, address = infos[0][0], infos[0][4]
        except (OSError, IndexError) as exc:
            log.warning("backend unresolved, kept down", backend=backend.name,
                        error=str(exc), retry_in=self.interval)
            family, address = backend.family, None
        changed = address != backend.address
        if changed and address is not None:
            log.info("backend resolved", backend=backend.name, address=address[0])
        backend.set_address(family, address)
        return changed
