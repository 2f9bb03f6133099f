"""TCP mode: each accepted connection is joined to a backend connection by a
byte relay (splice or copy), with half-close and resets passed through."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import structlog

from . import logs
from .pool import Connect
from .relay import Relay, make_relay
from .stream import reset

if TYPE_CHECKING:
    from .backends import Backend
    from .worker import Worker

log = structlog.get_logger("l7lb.tcp")


class TcpSession:
    """From accept until the relay takes over: pick a backend and connect."""

    def __init__(self, worker: "Worker", sock: socket.socket, peer: str) -> None:
        self.worker, self.sock, self.peer = worker, sock, peer
        self.started = time.monotonic()
        self.deadline = worker.clock.now + worker.connect_timeout
        self.connecting: Connect | None = None
        backend = worker.balancer.pick(peer.encode())    # hashed by client address
        if backend is None or not worker.pool.can_open(backend):
            self._refuse("no backend available" if backend is None else "pool.max_active reached")
            return
        self.backend: Backend = backend
        worker.balancer.acquire(backend)
        backend.requests += 1
        worker.connections.add(self)
        self.connecting = Connect(worker.pool, backend, self._connected)

    def _refuse(self, why: str) -> None:
        self.worker.stats.errors += 1
        log.warning("tcp connection refused", client=self.peer, reason=why)
        reset(self.sock)
        self.sock.close()

    def _connected(self, upstream: socket.socket | None, exc: OSError | None) -> None:
        worker = self.worker
        worker.forget(self)
        self.connecting = None
        if upstream is None:
            self.backend.errors += 1
            worker.balancer.release(self.backend)
            self._refuse(f"connect to {self.backend.name} failed: {exc.strerror or exc}")
            return
        if self.backend.client_side:
            worker.transport.serving(self.sock, self.backend)
        relay = make_relay(worker.relay_engine, worker.reactor, self.sock, upstream,
                           self._closed, worker.config.limits.buffer)
        relay.idle_timeout = worker.config.timeouts.idle
        worker.connections.add(relay)
        relay.start()

    def _closed(self, relay: Relay) -> None:
        worker = self.worker
        worker.forget(relay)
        self.backend.active -= 1
        worker.balancer.release(self.backend)
        worker.stats.requests += 1
        ms = round((time.monotonic() - self.started) * 1000, 2)
        worker.record(self.backend.name, 0, ms, relay.moved, 0, "")
        if worker.config.log.access:
            logs.access("connection", {"client": self.peer, "backend": self.backend.name,
                                       "bytes": relay.moved, "ms": ms})

    def check(self, now: float) -> None:
        if now >= self.deadline and self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
            self.worker.forget(self)
            self.backend.errors += 1
            self.worker.balancer.release(self.backend)
            self._refuse(f"connect to {self.backend.name} timed out")

    def shutdown(self) -> None:
        """Stopping: a connect in progress may finish; its relay then runs out the grace."""

    def abort(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
            self.worker.forget(self)
            self.worker.balancer.release(self.backend)
            reset(self.sock)
            self.sock.close()
