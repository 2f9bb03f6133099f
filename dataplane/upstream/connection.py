"""An upstream connection and what it belongs to, without the pool's
decisions (pool.py): the connection on its Stream, its host's pool slot
(``HostPool``), the counters, and the Protocols its users, readers, waiters
and multiplexed sessions (sessions.py) are seen through."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Callable, Protocol

from ..io.stream import Stream
from .host import Host


class Owner(Protocol):
    """What a connection (or a channel of a session) asks of its pool."""
    loop: asyncio.AbstractEventLoop
    max_requests: int

    def discard(self, conn: "UpstreamConnection", by_peer: bool = False) -> None: ...
    def streams_free(self, session: "Multiplexed", conn: "UpstreamConnection") -> None: ...
    def session_closed(self, session: "Multiplexed", conn: "UpstreamConnection",
                       by_peer: bool) -> None: ...


class UpstreamUser(Protocol):
    """What an upstream connection reports to the request using it."""
    def on_upstream_data(self, data: bytes) -> None: ...
    def on_upstream_closed(self, exc: OSError | None) -> None: ...


class Reader(Protocol):
    """What reads responses on a connection for its whole life (the HTTP
    layer's response reader); closed with the connection."""
    def close(self) -> None: ...


class Multiplexed(Protocol):
    """A connection that carries many requests at once (an HTTP/2 session,
    http2/upstream.py): each request gets a channel of its own."""
    @property
    def streams(self) -> int: ...      # requests under way on it
    @property
    def idle_since(self) -> float: ...  # when its last stream ended

    def channel(self) -> "UpstreamConnection | None": ...   # None: full or going away
    def ended(self, channel: "UpstreamConnection", reuse: bool) -> None: ...   # reset unless reuse
    def close(self) -> None: ...


Multiplex = Callable[["UpstreamConnection"], Multiplexed]


class Waiter(Protocol):
    """A request queued for a connection to a host at pool.max_active."""
    def dequeued(self, conn: "UpstreamConnection | None") -> None: ...


class PoolStats:
    """Connection counters of one host's pool in one worker."""

    __slots__ = ("opened", "reused", "closed_by_us", "closed_by_peer", "queue_timeouts",
                 "connect_failures", "retries", "retries_budget_exhausted",
                 "over_max_connections", "over_max_pending", "over_max_requests")

    def __init__(self) -> None:
        self.opened = self.reused = self.closed_by_us = self.closed_by_peer = 0
        self.queue_timeouts = self.connect_failures = self.retries = 0
        self.retries_budget_exhausted = 0   # retries refused by the retry budget
        # 503s for a breaker limit (max_connections, max_pending, max_requests)
        self.over_max_connections = self.over_max_pending = self.over_max_requests = 0


class HostPool:
    """One host's connections in one worker."""
    __slots__ = ("host", "idle", "shared", "opening", "open", "waiting", "stats", "gone")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.idle: list[UpstreamConnection] = []   # most recently used last
        self.shared: list[Multiplexed] = []        # multiplexed: every open session
        self.opening = False       # multiplexed: a session is being opened
        self.open = 0          # open or connecting, busy or idle
        self.waiting: deque[Waiter] = deque()       # requests queued at max_active
        self.stats = PoolStats()
        self.gone = False      # the host left the cluster: dropped once empty

    @property
    def busy(self) -> int:
        """Open connections carrying a request (or connecting for one)."""
        return self.open - len(self.idle)


class UpstreamConnection:
    """A connected socket on a uvloop transport. Reading stays on while it is
    idle, so a host's close is seen at once. ``reader`` is kept for its whole
    life by whoever reads responses on it (the HTTP layer's response reader)."""
    __slots__ = ("pool", "slot", "host", "sock", "stream", "user", "reader", "requests",
                 "idle_since", "counted", "session")

    def __init__(self, pool: Owner, slot: HostPool, sock: socket.socket) -> None:
        self.pool = pool
        self.slot = slot
        self.host = slot.host
        self.sock = sock       # ours until uvloop closes it (for _alive)
        self.stream = Stream(self)
        self.user: UpstreamUser | None = None
        self.reader: Reader | None = None
        self.requests = 0
        self.idle_since = 0.0
        self.counted = True    # holds one of slot.open
        self.session: Multiplexed | None = None   # set on a channel of a multiplexed one

    def on_data(self, data: bytes) -> None:
        user = self.user
        if user is not None:
            user.on_upstream_data(data)
        else:
            self.pool.discard(self)    # bytes nobody asked for: unusable

    def on_eof(self) -> None:
        self.on_error(None)

    def on_error(self, exc: OSError | None) -> None:
        if self.user is not None:
            self.user.on_upstream_closed(exc)
        else:
            self.pool.discard(self)
