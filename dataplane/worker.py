"""A worker: one event loop, its listener, its connections and their timers."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Callable, Protocol

import structlog

from . import logs
from .backends import Backend, Resolver
from .channel import OUTCOMES_PER_RECORD, Ack, Counters, Link, Outcomes, Snapshot
from .balance import build_now, key_function, make_balancer
from .config import Backend as BackendSpec
from .config import Config
from .http_proxy import ClientConnection
from .pool import Pool
from .reactor import Reactor
from .tcp_proxy import TcpSession
from .transport import Transport

log = structlog.get_logger("l7lb.worker")
ACCEPTS_PER_WAKEUP = 64


class Tracked(Protocol):
    """Anything the worker times out and shuts down: connections, sessions, relays."""
    def check(self, now: float) -> None: ...
    def shutdown(self) -> None: ...


class Clock:
    """Loop time, refreshed by the timer sweep: cheap to read on the hot path."""
    __slots__ = ("now",)

    def __init__(self, now: float) -> None:
        self.now = now


class Stats:
    __slots__ = ("requests", "errors", "rejected", "refused", "accepted")

    def __init__(self) -> None:
        self.requests = self.errors = self.rejected = self.refused = self.accepted = 0


def sweep_interval(config: Config) -> float:
    """Timers are checked this often: fine enough for the shortest timeout."""
    t = config.timeouts
    shortest = min(t.connect, t.header, t.idle, t.request, config.pool.idle_timeout)
    return min(0.25, max(0.01, shortest / 10))


def listen(config: Config) -> socket.socket:
    """A listening socket; SO_REUSEPORT lets every worker have its own."""
    family = socket.AF_INET6 if ":" in config.balancer.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((config.balancer.bind, config.balancer.port))
    sock.listen(socket.SOMAXCONN)
    sock.setblocking(False)
    return sock


class Worker:
    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop,
                 listener: socket.socket, link: Link | None = None) -> None:
        self.config = config
        self.link = link
        self.slot = link.slot if link else 0
        self.version = 0          # of the last state snapshot applied
        self.outcomes: list[tuple[str, int, float, int, int, str]] = []
        self.loop = loop
        self.listener = listener
        self.clock = Clock(loop.time())
        self.stats = Stats()
        self.backends = [Backend(spec) for spec in config.backends]
        settings = config.balancer
        self.balancer = make_balancer(settings.algorithm, self.backends, build_now,
                                      settings.ring_size, settings.balance_factor)
        self.balancer.build = self._build_in_thread   # the first table is built already
        self.key_of = key_function(settings.hash_key)
        self._builds = 0
        self.reactor = Reactor(loop)
        self.transport = Transport(config.congestion.pacer)
        self.pool = Pool(self.reactor, config.pool, self.transport)
        self.connect_timeout = config.pool.connect_timeout or config.timeouts.connect
        self.resolver = Resolver(loop, self.backends, config.balancer.health_check_interval,
                                 self.balancer.refresh)
        self.connections: set[Tracked] = set()
        relay = config.balancer.relay
        # auto: splice for TCP streams, user-space copy for upgraded HTTP streams
        # (small messages), splice for large HTTP bodies of known length.
        self.relay_engine = relay if relay != "auto" else (
            "splice" if config.balancer.mode == "tcp" else "copy")
        self.splice_bodies = relay != "copy"
        self.handler: Callable[[Worker, socket.socket, str], object] = (
            TcpSession if config.balancer.mode == "tcp" else ClientConnection)
        self.stopping = False
        self.stopped = loop.create_future()
        self._tick = sweep_interval(config)

    async def start(self) -> None:
        await self.resolver.start()
        if self.link is not None:
            self.link.down.listen(self.loop, self._on_message)
            self.link.down.drain()     # the first snapshot, before any request
        self.reactor.add_reader(self.listener.fileno(), self._accept)
        self.loop.call_later(self._tick, self._sweep)
        self.loop.call_later(self.config.congestion.pacer.interval, self._pace)

    def _pace(self) -> None:
        self.transport.pace(self.backends)
        if not self.stopping:
            self.loop.call_later(self.config.congestion.pacer.interval, self._pace)

    def _accept(self) -> None:
        limit = self.config.limits.connections
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: skip this wake-up rather than spin.
                log.error("accept failed", error=exc.strerror, errno=errno.errorcode.get(exc.errno))
                return
            if len(self.connections) >= limit:
                self.stats.refused += 1
                sock.close()
                continue
            self.stats.accepted += 1
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.handler(self, sock, address[0])

    def forget(self, conn: Tracked) -> None:
        self.connections.discard(conn)
        if self.stopping and not self.connections and not self.stopped.done():
            self.stopped.set_result(None)

    def _sweep(self) -> None:
        now = self.clock.now = self.loop.time()
        for conn in list(self.connections):
            conn.check(now)
        self.pool.sweep(self.backends, now)
        self.report()
        logs.flush()
        self.loop.call_later(self._tick, self._sweep)

    def _build_in_thread(self, make, done) -> None:
        """Hash tables are built in a thread and swapped in by the loop; a build
        overtaken by a newer one is dropped."""
        self._builds += 1
        ticket = self._builds

        def finished(future) -> None:
            if future.exception() is not None:
                log.error("balancer table build failed", error=repr(future.exception()))
            elif ticket == self._builds:
                done(future.result())

        self.loop.run_in_executor(None, make).add_done_callback(finished)

    # -- the control process -------------------------------------------
    def record(self, backend: str, status: int, ms: float, bytes_in: int, bytes_out: int,
               error: str) -> None:
        """One finished request or connection, reported upward in batches."""
        if self.link is not None:
            self.outcomes.append((backend, status, ms, bytes_in, bytes_out, error))

    def report(self) -> None:
        """Send the batched outcomes and the counters to the control process."""
        link = self.link
        if link is None:
            return
        outcomes = self.outcomes
        for start in range(0, len(outcomes), OUTCOMES_PER_RECORD):
            link.up.send(Outcomes(self.slot, outcomes[start:start + OUTCOMES_PER_RECORD]))
        outcomes.clear()
        link.up.send(Counters(self.slot, os.getpid(), self.stats.accepted,
                              len(self.connections), link.up.ring.dropped,
                              self.stats.rejected, self.stats.refused,
                              self.pool.stats(self.backends),
                              self.transport.summary(self.backends, self.clock.now)))

    def _on_message(self, message: object) -> None:
        if isinstance(message, Snapshot) and message.version > self.version:
            self.apply(message)
            self.link.up.send(Ack(self.slot, os.getpid(), message.version))

    def apply(self, snapshot: Snapshot) -> None:
        """Take a new backend set: kept backends keep their pools and counters."""
        current = {b.name: b for b in self.backends}
        updated = []
        for state in snapshot.backends:
            backend = current.pop(f"{state.host}:{state.port}", None) or Backend(
                BackendSpec(host=state.host, port=state.port, weight=state.weight))
            backend.weight = state.weight
            backend.state = state.state
            if backend.cc != state.cc:     # idle connections would keep the old one
                self.pool.close_idle([backend], for_good=False)
            backend.cc, backend.client_side = state.cc, state.client_side
            updated.append(backend)
        for gone in current.values():       # busy connections finish their requests
            gone.weight = 0                  # the old hash table may still name it
            self.pool.close_idle([gone], for_good=False)
        self.backends[:] = updated           # the balancer and resolver share this list
        self.resolver.refresh()
        self.version = snapshot.version

    async def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight work finish within ``grace``, then cut the rest."""
        self.stopping = True
        self.reactor.remove_reader(self.listener.fileno())
        self.listener.close()
        self.resolver.stop()
        self.pool.close_idle(self.backends)
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            log.info("draining", connections=len(self.connections), grace=grace)
            try:
                await asyncio.wait_for(asyncio.shield(self.stopped), grace)
            except asyncio.TimeoutError:
                log.warning("grace period over, closing", connections=len(self.connections))
        for conn in list(self.connections):
            abort = getattr(conn, "abort", None)
            abort() if abort else conn.shutdown()
        self.pool.close_idle(self.backends)
        log.info("pool stats", backends=self.pool.stats(self.backends))
