"""A cluster: one backend group as one worker sees it (Envoy's cluster,
HAProxy's backend section).

It owns the hosts, the choice among them, their connection pool with its
admission queue, and the resolver of their names, and it is the one place
that answers "may this host take a request now" (``admits``: resolved,
weight above 0, admin state ``ready``, not ``down`` by health unless the
cluster is in panic, and its circuit breaker closed, or half open with a
trial permit for this worker: breakers.py).

Panic (Envoy's): when some but fewer than ``health.panic_threshold`` percent
of the weight of the hosts not in ``maint`` is healthy, health is ignored and
traffic spreads over all of them rather than crushing the few survivors.
With none healthy there is no host to choose: the request gets a 503 at once.

Passive health: a refused connect on a new connection marks the host down in
this worker at once; ``health.passive_errors`` connect timeouts, resets or
closes before any response byte in a row do too. Errors on a reused pooled
connection do not count (keep-alive races). The verdict goes to the control
process at once (``verdict``), which tells every worker.
Exchanges ask it for a host (``choose(key)``: the key is ignored by unhashed
choices), for a connection (``connection``), and report the typed Outcome
when done (``report``); it keeps the in-flight
counts and passes outcomes on to whoever listens (the worker's batch for the
control process).
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import msgspec
import structlog

from ..breaker.policy import share
from ..config import Balancer as BalancerSettings
from ..config import Breaker as BreakerSettings
from ..config import Health as HealthSettings
from ..config import Retries as RetrySettings
from ..config import Pool as PoolSettings
from ..io.reactor import Reactor
from ..kernel.transport import Transport
from ..tls.contexts import backend_context
from .breakers import CLOSED, Signals, WorkerBreakers
from .choice import Build, build_now, make_choice
from .host import Host
from .keys import key_function
from .outcome import ErrorKind, Outcome
from .pool import Pool, Tls, UpstreamConnection, Waiter
from .resolver import Resolver

log = structlog.get_logger("l7lb.cluster")
BUDGET_BUCKET = 5.0      # seconds per bucket of the retry budget's rate side

# What ``connection`` answers when it has no pooled connection to hand out.
MAY_OPEN = "may_open"  # a connection slot is yours: open one
IN_QUEUE = "in_queue"  # wait: the waiter's ``dequeued`` is called with your turn
NO_ROOM = "no_room"    # pool.max_active and pool.max_queue reached
# ...or a breaker limit reached (this worker's share of it): 503 at once.
MAX_CONNECTIONS, MAX_PENDING, MAX_REQUESTS = "max_connections", "max_pending", "max_requests"


NO_ERROR = ErrorKind.NONE
# Passive signals: errors that count toward health.passive_errors.
COUNTED = frozenset({ErrorKind.CONNECT_TIMEOUT, ErrorKind.CONNECT_ERROR,
                     ErrorKind.RESET_BEFORE_RESPONSE, ErrorKind.CLOSED_BEFORE_RESPONSE})


class HostSpec(Protocol):
    """What a snapshot says of one host (control's BackendState has this shape)."""
    host: str
    port: int
    weight: int
    state: str
    cc: str
    client_side: bool
    health: str
    weight_percent: int
    breaker: str
    lease: int
    permits: dict[int, int]


class Cluster:
    def __init__(self, name: str, settings: BalancerSettings, pool: PoolSettings,
                 health: HealthSettings, retries: RetrySettings, breaker: BreakerSettings,
                 reactor: Reactor, transport: Transport, batch: Callable[[Outcome], None],
                 signals: Signals, build: Build = build_now) -> None:
        self.name = name
        self.retry_attempts = retries.attempts
        self.budget = retries.budget_percent / 100
        self.min_retries = retries.min_concurrent
        self.retrying = 0          # requests of this worker now on a retry
        # The budget's rate side: attempts and retries started in this and the
        # previous BUDGET_BUCKET seconds (rotated by the worker's sweep).
        self.attempts_now = self.retries_now = 0
        self.attempts_before = self.retries_before = 0
        self.bucket_start = 0.0
        self.hosts: list[Host] = []
        self.panic = False
        self.panic_threshold = health.panic_threshold
        self.passive_errors = health.passive_errors if health.passive else 0
        self._batch = batch
        self.signals = signals
        self.choice = make_choice(settings.algorithm, self.hosts, self.admits, build_now,
                                  settings.ring_size, settings.maglev_table_size,
                                  settings.balance_factor)
        self._build_later = build
        # Called per request: bound once here rather than wrapped in a method.
        self.choose: Callable[[bytes | None], Host | None] = self.choice.pick
        self.hashed = self.choice.hashed
        self.key_of = key_function(settings.hash_key)
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
                         Tls(backend_context(tls), tls.sni) if tls is not None else None)
        self.max_requests = share(breaker.max_requests, slot, workers) or 1 << 62
        # What a full queue means: a breaker limit (named in the 503) or the pool's own.
        self.full = (MAX_PENDING if pending is not None and pending <= pool.max_queue
                     else MAX_CONNECTIONS if connections is not None
                     and connections < pool.max_active else NO_ROOM)
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
        self.attempts_now += 1
        if host.breaker != CLOSED:
            self.breakers.trial_begins(host)

    def release(self, host: Host) -> None:
        """It is no longer under way on ``host`` (finished, failed or upgraded)."""
        host.inflight -= 1
        self.choice.in_flight -= 1

    def choose_other(self, key: bytes | None, tried: set[Host]) -> Host | None:
        """A host for a retry: what the choice offers next, past ``tried``."""
        return self.choice.pick_other(key, tried)

    def may_retry(self) -> bool:
        """The retry budget, two sides that must both allow a retry:

        - concurrency (Envoy's): requests on a retry stay under
          ``budget_percent`` of the requests under way on their first try, or
          under ``min_concurrent``;
        - rate (as Linkerd's and the SRE book's): retries started in the last
          5-10 s stay under ``budget_percent`` of the first tries started
          then, or under ``min_concurrent``, so that a retried request making
          several attempts cannot multiply the load past the budget.

        Each worker holds it for its own requests: no worker waits on another,
        and as SO_REUSEPORT spreads connections evenly the ratio holds overall."""
        first_tries = self.choice.in_flight - self.retrying
        if self.retrying >= max(self.min_retries, self.budget * first_tries):
            return False
        retries = self.retries_now + self.retries_before
        firsts = self.attempts_now + self.attempts_before - retries
        return retries < max(self.min_retries, self.budget * firsts)

    def retried(self) -> None:
        """A retry is starting (after may_retry said yes, or outside the budget)."""
        self.retries_now += 1

    def connection(self, host: Host, waiter: Waiter, now: float) -> UpstreamConnection | str:
        """A pooled connection to reuse, or MAY_OPEN, IN_QUEUE, NO_ROOM or the
        breaker limit that is reached (``host`` has begun this request)."""
        if host.inflight > self.max_requests:
            return self._over(host, MAX_REQUESTS)
        pool = self.pool
        conn = pool.acquire(host, now)
        if conn is not None:
            return conn
        if pool.can_open(host):
            return MAY_OPEN
        if pool.enqueue(host, waiter):
            return IN_QUEUE
        return NO_ROOM if self.full is NO_ROOM else self._over(host, self.full)

    @staticmethod
    def _over(host: Host, limit: str) -> str:
        stats = host.conn_stats
        setattr(stats, f"over_{limit}", getattr(stats, f"over_{limit}") + 1)
        return limit

    def report(self, host: Host | None, outcome: Outcome) -> None:
        """A request (or TCP connection) ended: batch its outcome for the control
        process, and read it as a passive health signal and a breaker's call."""
        self._batch(outcome)
        if host is None:
            return
        self.breakers.outcome(host, outcome)
        if outcome.error is NO_ERROR:
            if host.failures:
                host.failures = 0
        elif self.passive_errors and not outcome.reused:
            self._passive(host, outcome.error)

    def _passive(self, host: Host, error: ErrorKind) -> None:
        if error is ErrorKind.CONNECT_REFUSED:
            self._down(host, "connect refused")
        elif error in COUNTED:
            host.failures += 1
            if host.failures >= self.passive_errors:
                self._down(host, f"{host.failures} errors in a row, the last {error.value}")

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
        for exchange in list(host.awaiting):
            exchange.host_down()

    def _judge_panic(self) -> None:
        """Panic when some, but too little, of the weight is healthy."""
        weights = [(h.weight, h.health != "down") for h in self.hosts
                   if h.state != "maint" and h.weight > 0]
        total = sum(w for w, _ in weights)
        healthy = sum(w for w, up in weights if up)
        panic = 0 < healthy < total * self.panic_threshold / 100
        if panic != self.panic:
            log.warning("cluster panic" if panic else "cluster out of panic", cluster=self.name,
                        healthy_weight=healthy, weight=total)
        self.panic = panic

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
            host = current.pop(f"{spec.host}:{spec.port}", None) or Host(spec.host, spec.port)
            if spec.health == "down" and host.health != "down":
                evicted.append(host)
            host.weight, host.state, host.health = self._weight(spec), spec.state, spec.health
            if host.cc != spec.cc:      # idle connections would keep the old algorithm
                self.pool.close_idle([host], for_good=False)
            host.cc, host.client_side = spec.cc, spec.client_side
            self.breakers.apply(host, spec.breaker, spec.lease,
                                spec.permits.get(self.signals.slot, 0))
            updated.append(host)
        for gone in current.values():   # busy connections finish their requests
            gone.weight = 0              # the old hash table may still name it
            self.pool.close_idle([gone], for_good=False)
        self.hosts[:] = updated          # the choice and the resolver share this list
        self._judge_panic()
        if resolve:
            self.resolver.refresh()
        for host in evicted:
            self._evict(host)

    def _weight(self, spec: HostSpec) -> int:
        """Slow start scales the weight, except for hashed choices: their tables
        would be rebuilt at every step, moving keys (Envoy does the same)."""
        if self.hashed or spec.weight_percent >= 100 or spec.weight == 0:
            return spec.weight
        return max(1, spec.weight * spec.weight_percent // 100)

    def sweep(self, now: float) -> None:
        self.pool.sweep(self.hosts, now)
        if now - self.bucket_start >= BUDGET_BUCKET:
            self.attempts_before, self.retries_before = self.attempts_now, self.retries_now
            self.attempts_now = self.retries_now = 0
            self.bucket_start = now

    def close(self) -> None:
        """Stopping: no more lookups; idle connections closed, none taken back."""
        self.resolver.stop()
        self.pool.close_idle(self.hosts)
