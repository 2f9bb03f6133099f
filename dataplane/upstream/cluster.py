"""A cluster: one backend group as one worker sees it (Envoy's cluster,
HAProxy's backend section).

It owns the hosts, the choice among them, their connection pool with its
admission queue, and the resolver of their names, and it is the one place
that answers "may this host take a request now" (``admits``: resolved,
weight above 0, admin state ``ready``, not ``down`` by health unless the
cluster is in panic, and its circuit breaker closed, or half open with a
trial permit for this worker: breakers.py).

Passive health and panic are decided in passive.py; the verdicts go to the
control process at once (``verdict``), which tells every worker.
Requests ask it for a host (``choose(key)``: the key is ignored by unhashed
choices), for a connection (``connection``, or ``lease`` on the fast lane),
and tell it how they ended (``finished``, ``answered``): it keeps the
in-flight counts, counts each host's traffic in its tally (sent to the
control process with the worker's reports) and reads the ending as a
passive health signal and a breaker's call. Everything a request does with
connections goes through it: nothing above the cluster touches the pool.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Protocol, Sequence

import msgspec
import structlog

from ..breaker.policy import share
from ..config import (GRPC_STATUSES, BalancerSettings, BreakerSettings, HealthSettings,
                      PoolSettings, RetrySettings)
from ..io.reactor import Reactor
from ..kernel.transport import Transport
from ..tls.contexts import backend_context
from .admission import NO_ROOM, OPEN, QUEUED, Admission
from .breakers import CLOSED, Signals, WorkerBreakers
from .budget import RetryBudget
from .choice import Build, build_now, make_choice
from .host import Host
from .keys import key_function, needs_headers
from .outcome import ErrorKind
from .passive import in_panic, panic_weights, passive_verdict
from .connect import Connect, SocketConnected
from .connection import Multiplex, UpstreamConnection, Waiter
from .pool import Connected, Pool, Tls
from .resolver import Resolver
from .tally import HostFigures, HostTally

log = structlog.get_logger("l7lb.cluster")



NO_ERROR = ErrorKind.NONE


class HostSpec(Protocol):
    """What a snapshot says of one host (control's BackendState has this shape)."""
    host: str
    port: int
    weight: int
    state: str
    cc: str
    cc_wanted: str            # "auto": cc moves without closing idle connections
    client_side: bool
    health: str
    weight_percent: int
    breaker: str
    lease: int
    permits: dict[int, int]


class Cluster:
    def __init__(self, name: str, settings: BalancerSettings, pool: PoolSettings,
                 health: HealthSettings, retries: RetrySettings, breaker: BreakerSettings,
                 reactor: Reactor, transport: Transport, signals: Signals,
                 build: Build = build_now, histogram: bool = False,
                 multiplex: Multiplex | None = None) -> None:
        """``histogram``: count each host's request durations by bucket (the
        metrics endpoint shows them); ``multiplex``: how a connection carries
        many requests (HTTP/2), when the group's protocol does."""
        self.name = name
        self.retry_attempts = retries.attempts
        self.retry_grpc = frozenset(b"%d" % GRPC_STATUSES.index(name)
                                    for name in retries.grpc_status)
        self.budget = RetryBudget(retries.budget_percent, retries.min_concurrent)
        self.hosts: list[Host] = []
        self.panic = False
        self.panic_threshold = health.panic_threshold
        self.passive_errors = health.passive_errors if health.passive else 0
        self.histogram = histogram
        self.signals = signals
        self.choice = make_choice(settings.algorithm, self.hosts, self.admits, build_now,
                                  settings.ring_size, settings.maglev_table_size,
                                  settings.balance_factor)
        self._build_later = build
        # Called per request: bound once here rather than wrapped in a method.
        self.choose: Callable[[bytes | None], Host | None] = self.choice.pick
        self.hashed = self.choice.hashed
        self.key_of = key_function(settings.hash_key)
        self.key_needs_headers = needs_headers(settings.hash_key)
        slot, workers = signals.slot, settings.worker_count()
        connections = share(breaker.max_connections, slot, workers)
        pending = share(breaker.max_pending, slot, workers)
        # A connection that began with one client's PROXY header is that
        # client's: with send_proxy, connections are not kept for reuse.
        self.send_proxy = settings.send_proxy
        if self.send_proxy:
            pool = msgspec.structs.replace(pool, max_idle=0)
        tls = settings.backend_tls
        self.pool = Pool(reactor, pool, transport, connections, pending,
                         Tls(backend_context(tls, settings.protocol), tls.sni)
                         if tls is not None else None, multiplex)
        self.transport = transport
        self.max_requests = share(breaker.max_requests, slot, workers) or 1 << 62
        # Which limit stops a new connection (a breaker's is named and counted),
        # and what a full queue means: a breaker limit or the pool's own.
        self.open_limit = (Admission.MAX_CONNECTIONS if connections is not None
                           and connections < pool.max_active else NO_ROOM)
        self.full = (Admission.MAX_PENDING if pending is not None and pending <= pool.max_queue
                     else self.open_limit)
        self.resolver = Resolver(reactor.loop, self.hosts, settings.resolve_interval,
                                 self.choice.refresh)
        self.breakers = WorkerBreakers(name, breaker, self.hosts, signals, self.choice.refresh)

    # -- admission ---------------------------------------------------------
    def admits(self, host: Host) -> bool:
        """May this host take a new request now?"""
        return (host.address is not None and host.weight > 0 and host.state == "ready"
                and (host.health != "down" or self.panic)
                and (host.breaker == CLOSED or host.permits > 0))

    def begin(self, host: Host) -> None:
        """A request (or TCP connection), or one more attempt of it, goes to ``host``."""
        host.inflight += 1
        self.choice.in_flight += 1
        self.budget.attempts_now += 1
        if host.breaker != CLOSED:
            self.breakers.trial_begins(host)

    def release(self, host: Host) -> None:
        """It is no longer under way on ``host`` (finished, failed or upgraded)."""
        host.inflight -= 1
        self.choice.in_flight -= 1

    def choose_other(self, key: bytes | None, tried: set[Host]) -> Host | None:
        """A host for a retry: what the choice offers next, past ``tried``."""
        return self.choice.pick_other(key, tried)

    # -- retries -------------------------------------------------------------
    def may_retry(self, host: Host) -> bool:
        """The retry budget (budget.py) allows a retry after a failure on ``host``."""
        if self.budget.allows(self.choice.in_flight):
            return True
        self.pool.of(host).stats.retries_budget_exhausted += 1
        return False

    def retrying(self, host: Host, first: bool) -> None:
        """A request failed on ``host`` moves to another (``first``: its first
        move; ``retry_over`` is due when it ends)."""
        self.pool.of(host).stats.retries += 1
        self.budget.retried(first)

    def retry_over(self) -> None:
        """A request that ``retrying`` moved has ended."""
        self.budget.request_ended()

    def reconnect(self, host: Host) -> bool:
        """A reused connection was found closed: may the request try once more
        on a new one to the same host? (counted as a retry)"""
        slot = self.pool.of(host)
        slot.stats.retries += 1
        return self.pool.can_reopen(slot)

    # -- connections ---------------------------------------------------------
    def lease(self, host: Host, now: float) -> UpstreamConnection | None:
        """The fast lane's connection: an idle pooled one to ``host`` (or a
        stream on a multiplexed one) whose breaker is closed, with the request
        begun on it; or None (the request then takes the general path, which
        asks ``connection``)."""
        if host.inflight >= self.max_requests or host.breaker != CLOSED:
            return None
        slot = self.pool.slots.get(host)
        if slot is None or not slot.idle and not slot.shared:
            return None
        conn = self.pool.acquire(slot, now)
        if conn is not None:
            host.inflight += 1
            self.choice.in_flight += 1
            self.budget.attempts_now += 1
        return conn

    def connection(self, host: Host, waiter: Waiter, now: float) -> UpstreamConnection | Admission:
        """A pooled connection to reuse, or what to do without one (``host``
        has begun this request)."""
        if host.inflight > self.max_requests:
            return self._over(host, Admission.MAX_REQUESTS)
        pool = self.pool
        slot = pool.of(host)
        conn = pool.acquire(slot, now)
        if conn is not None:
            return conn
        if pool.can_open(slot):
            return OPEN
        if pool.enqueue(slot, waiter):
            return QUEUED
        return NO_ROOM if self.full is NO_ROOM else self._over(host, self.full)

    def _over(self, host: Host, limit: Admission) -> Admission:
        stats = self.pool.of(host).stats
        name = f"over_{limit.value}"
        setattr(stats, name, getattr(stats, name) + 1)
        return limit

    def open(self, host: Host, callback: Connected) -> Connect:
        """Open a new connection to ``host`` (after OPEN, or a turn in its queue)."""
        return self.pool.connect(self.pool.of(host), callback)

    def taken(self, conn: UpstreamConnection) -> None:
        """A queued request took a connection handed to it (``dequeued``)."""
        conn.slot.stats.reused += 1

    def unqueue(self, host: Host, waiter: Waiter, timed_out: bool) -> None:
        self.pool.unqueue(self.pool.of(host), waiter, timed_out)

    def pass_turn(self, host: Host) -> None:
        """A queued request gave up the turn it was handed."""
        self.pool.pass_turn(self.pool.of(host))

    def give_back(self, conn: UpstreamConnection, now: float) -> None:
        """Its response was read in full: the connection may carry another."""
        self.pool.release(conn, now)

    def discard(self, conn: UpstreamConnection, by_peer: bool = False) -> None:
        """Close it (``by_peer``: the backend closed or reset it)."""
        self.pool.discard(conn, by_peer)

    def detach(self, conn: UpstreamConnection) -> socket.socket:
        """Its socket leaves the pool for good (an upgraded stream)."""
        return self.pool.detach(conn)

    def detach_transport(self, conn: UpstreamConnection) -> asyncio.Transport:
        """The same over TLS: its transport leaves."""
        return self.pool.detach_transport(conn)

    def may_connect(self, host: Host) -> Admission:
        """TCP mode: may a new connection to ``host`` be opened now? A refusal
        by a breaker limit is counted, as on the HTTP path."""
        if host.inflight >= self.max_requests:
            return self._over(host, Admission.MAX_REQUESTS)
        if self.pool.can_open(self.pool.of(host)):
            return OPEN
        return NO_ROOM if self.open_limit is NO_ROOM else self._over(host, self.open_limit)

    def connect_socket(self, host: Host, callback: SocketConnected) -> Connect:
        """TCP mode: a connection whose socket leaves the pool at once; it holds
        one of the host's open connections until ``socket_closed``."""
        return self.pool.connect_socket(self.pool.of(host), callback)

    def socket_closed(self, host: Host) -> None:
        self.pool.socket_closed(self.pool.of(host))

    # -- endings -------------------------------------------------------------
    def answered(self, host: Host, conn: UpstreamConnection, status: int, ms: float,
                 bytes_in: int, bytes_out: int, now: float) -> None:
        """A fast-lane request ended well: its connection back to the pool, and
        the same records as ``finished`` makes for an answered request (the
        breaker is closed on the lane, so there is no trial to judge)."""
        self.pool.release(conn, now)
        host.inflight -= 1
        self.choice.in_flight -= 1
        host.tally.calls.append((status, ms, bytes_in, bytes_out, None))
        breakers = self.breakers
        if breakers.enabled:
            judge = breakers.judge
            mark = (status in judge.bad_statuses) + 2 * (ms > judge.slow_ms)
            host.marks.append(mark)
            if mark:
                breakers.count(host)
        if host.failures:
            host.failures = 0

    def finished(self, host: Host, status: int, ms: float, bytes_in: int, bytes_out: int,
                 kind: ErrorKind, reused: bool) -> None:
        """A request (or TCP connection) on ``host`` ended, or one attempt of it
        failed: recorded in the host's tally, and read as a passive health
        signal and a breaker's call."""
        if kind is NO_ERROR:
            host.tally.calls.append((status, ms, bytes_in, bytes_out, None))
            if host.failures:
                host.failures = 0
        else:
            host.tally.calls.append((status, ms, bytes_in, bytes_out, kind))
            if self.passive_errors and not reused:
                self._passive(host, kind)
        self.breakers.call(host, status, ms, kind)

    def _passive(self, host: Host, error: ErrorKind) -> None:
        host.failures, reason = passive_verdict(host.failures, error, self.passive_errors)
        if reason is not None:
            self._down(host, reason)

    def _down(self, host: Host, reason: str) -> None:
        host.failures = 0
        if host.health != "down":
            host.health = "down"
            self._judge_panic()
            self.choice.refresh()
            self.signals.verdict(self.name, host.name, reason)
            self._evict(host)

    @staticmethod
    def _evict(host: Host) -> None:
        """A host declared down: requests on it still waiting for their response
        head move on to another host now if they can be replayed (HAProxy's
        ``on-marked-down shutdown-sessions``, but retried), instead of waiting
        out timeouts.request on a backend that is gone."""
        for request in list(host.awaiting):
            request.host_down()

    def _judge_panic(self) -> None:
        healthy, total = panic_weights((h.weight, h.state, h.health) for h in self.hosts)
        panic = in_panic(healthy, total, self.panic_threshold)
        if panic != self.panic:
            log.warning("cluster panic" if panic else "cluster out of panic", cluster=self.name,
                        healthy_weight=healthy, weight=total)
        self.panic = panic

    def take_tallies(self) -> dict[str, HostFigures]:
        """Each host's figures since the last report (hosts with none left out)."""
        out = {}
        for host in self.hosts:
            figures = host.tally.take()
            if figures is not None:
                out[host.name] = figures
        return out

    # -- the host set ------------------------------------------------------
    async def start(self) -> None:
        """Resolve the hosts and build the first table before any request; later
        tables are built with ``build`` (off the event loop)."""
        await self.resolver.start()
        self.choice.build = self._build_later

    def update(self, specs: Sequence[HostSpec], resolve: bool = True) -> None:
        """Take a new host set: hosts kept keep their pools and counters."""
        current = {h.name: h for h in self.hosts}
        updated = []
        evicted = []
        for spec in specs:
            host = current.pop(f"{spec.host}:{spec.port}", None) or self._host(spec)
            if spec.health == "down" and host.health != "down":
                evicted.append(host)
            host.weight, host.state, host.health = self._weight(spec), spec.state, spec.health
            # Idle connections would keep the old algorithm; auto's moves leave them be.
            if host.cc != spec.cc and spec.cc_wanted != "auto":
                self.pool.close_idle([self.pool.of(host)], for_good=False)
            host.cc, host.client_side = spec.cc, spec.client_side
            self.breakers.apply(host, spec.breaker, spec.lease,
                                spec.permits.get(self.signals.slot, 0))
            updated.append(host)
        for gone in current.values():   # busy connections finish their requests
            gone.weight = 0              # the old hash table may still name it
            self.pool.gone(gone)
        self.hosts[:] = updated          # the choice and the resolver share this list
        self._judge_panic()
        if resolve:
            self.resolver.refresh()
        for host in evicted:
            self._evict(host)

    def _host(self, spec: HostSpec) -> Host:
        host = Host(spec.host, spec.port)
        host.tally = HostTally(self.histogram)
        return host

    def _weight(self, spec: HostSpec) -> int:
        """Slow start scales the weight, except for hashed choices: their tables
        would be rebuilt at every step, moving keys (Envoy does the same)."""
        if self.hashed or spec.weight_percent >= 100 or spec.weight == 0:
            return spec.weight
        return max(1, spec.weight * spec.weight_percent // 100)

    def sweep(self, now: float) -> None:
        self.pool.sweep(now)
        self.budget.rotate(now)

    def stats(self) -> dict[str, dict[str, int]]:
        """Each host's pool figures, for the worker's report."""
        return self.pool.stats(self.hosts)

    def close(self) -> None:
        """Stopping: no more lookups; idle connections closed, none taken back."""
        self.resolver.stop()
        self.pool.close_idle()
