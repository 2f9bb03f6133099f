"""Upstream connections: opening them (non-blocking connect) and keeping idle
keep-alive ones per host for reuse, most recently used first.

Limits: ``pool.max_active`` connections per host (busy + idle + connecting),
``pool.max_idle`` idle ones kept, idle ones closed after ``pool.idle_timeout``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from typing import Callable, NamedTuple, Protocol

from .host import Host, PoolStats
from ..config import Pool as PoolSettings
from ..io.reactor import Reactor
from ..io.stream import Stream
from ..kernel.transport import Transport

FRESH = 1.0     # seconds idle under which a pooled connection is reused unchecked


class UpstreamUser(Protocol):
    """What an upstream connection reports to the exchange using it."""
    def on_upstream_data(self, data: bytes) -> None: ...
    def on_upstream_closed(self, exc: OSError | None) -> None: ...


class UpstreamConnection:
    """A connected socket on a uvloop transport. Reading stays on while it is
    idle, so a host's close is seen at once."""
    __slots__ = ("pool", "host", "sock", "stream", "user", "requests", "idle_since", "counted")

    def __init__(self, pool: "Pool", host: Host, sock: socket.socket) -> None:
        self.pool = pool
        self.host = host
        self.sock = sock       # ours until uvloop closes it (for _alive)
        self.stream = Stream(self)
        self.user: UpstreamUser | None = None
        self.requests = 0
        self.idle_since = 0.0
        self.counted = True    # holds one of host.active

    def on_data(self, data: bytes) -> None:
        if self.user is not None:
            self.user.on_upstream_data(data)
        else:
            self.pool.discard(self)    # bytes nobody asked for: unusable

    def on_eof(self) -> None:
        self.on_error(None)

    def on_error(self, exc: OSError | None) -> None:
        if self.user is not None:
            self.user.on_upstream_closed(exc)
        else:
            self.pool.discard(self)


Connected = Callable[[UpstreamConnection | None, OSError | None], None]


class Tls(NamedTuple):
    context: ssl.SSLContext
    name: str | None           # SNI and the name verified; None: the backend's host
SocketConnected = Callable[[socket.socket | None, OSError | None], None]


class Connect:
    """One non-blocking connect in progress; ``cancel`` abandons it.

    It holds one of ``host.active`` from the start; whoever receives the
    socket takes that over."""

    __slots__ = ("pool", "host", "sock", "callback", "waiting")
    callback: "SocketConnected | None"

    def __init__(self, pool: "Pool", host: Host, callback: SocketConnected) -> None:
        self.pool, self.host = pool, host
        self.callback = callback
        self.sock = socket.socket(host.family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pool.transport.before_connect(self.sock, host)
        self.waiting = False
        host.active += 1
        err = self.sock.connect_ex(host.address)
        if err == errno.EINPROGRESS:
            self.waiting = True
            pool.reactor.add_writer(self.sock.fileno(), self._writable)
        else:
            pool.loop.call_soon(self._complete, err)

    def _writable(self) -> None:
        self.pool.reactor.remove_writer(self.sock.fileno())
        self.waiting = False
        self._complete(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def _complete(self, err: int) -> None:
        if self.callback is None:
            return
        callback = self.callback
        if err:
            self._give_up()
            callback(None, OSError(err, os.strerror(err)))
        else:
            self.callback = None
            self.pool.transport.connected(self.sock, self.host)
            callback(self.sock, None)

    def cancel(self) -> None:
        if self.callback is not None:
            if self.waiting:
                self.pool.reactor.remove_writer(self.sock.fileno())
            self._give_up()
            self.pool.pass_turn(self.host)

    def _give_up(self) -> None:
        self.callback = None
        self.host.active -= 1
        self.sock.close()


class Waiter(Protocol):
    """An exchange queued for a connection to a host at pool.max_active."""
    def dequeued(self, conn: UpstreamConnection | None) -> None: ...


class Pool:
    """Per-host connections of one worker: ``max_active`` open at most,
    ``max_idle`` kept idle (most recently used reused first) until
    ``idle_timeout``, at most ``max_requests_per_connection`` requests each;
    past ``max_active``, requests wait in a FIFO of at most ``max_queue``."""

    def __init__(self, reactor: Reactor, settings: PoolSettings, transport: Transport,
                 max_connections: int | None = None, max_pending: int | None = None,
                 tls: Tls | None = None) -> None:
        """``max_connections`` and ``max_pending``: this worker's share of the
        breaker limits, when lower than max_active and max_queue; ``tls``: the
        context and server name for TLS to the backends."""
        self.reactor = reactor
        self.tls = tls
        self.transport = transport
        self.loop = reactor.loop
        self.max_idle = settings.max_idle
        self.max_active = settings.max_active if max_connections is None \
            else min(settings.max_active, max_connections)
        self.idle_timeout = settings.idle_timeout
        self.max_requests = settings.max_requests_per_connection
        self.max_queue = settings.max_queue if max_pending is None \
            else min(settings.max_queue, max_pending)
        self.closing = False

    def acquire(self, host: Host, now: float) -> UpstreamConnection | None:
        """An idle connection to reuse, most recently used first, or None. One
        idle for over FRESH seconds that the host has closed (EOF or reset
        not yet seen by the loop) is dropped here rather than failing the
        request; a fresher one is taken without that check (a syscall per
        request under load), since hosts close idle connections on timers
        of seconds, and the one retry covers what slips through."""
        idle = host.idle
        stale = now - FRESH
        while idle:
            conn = idle.pop()
            if conn.idle_since > stale or _alive(conn.sock):
                host.conn_stats.reused += 1
                return conn
            self.discard(conn, by_peer=True)
        return None

    @staticmethod
    def backend_reused(conn: UpstreamConnection) -> None:
        conn.host.conn_stats.reused += 1

    @staticmethod
    def count_retry(host: Host) -> None:
        """A request retried after a failed attempt on this host."""
        host.conn_stats.retries += 1

    @staticmethod
    def count_budget_exhausted(host: Host) -> None:
        """A retry after a failed attempt on this host was refused by the budget."""
        host.conn_stats.retries_budget_exhausted += 1

    def can_open(self, host: Host) -> bool:
        return host.active < self.max_active

    def connect(self, host: Host, callback: Connected) -> Connect:
        """Open a keep-alive connection for HTTP: the one place they are made."""
        def opened(sock: socket.socket | None, exc: OSError | None) -> None:
            if sock is None:
                host.conn_stats.connect_failures += 1
                self.pass_turn(host)
                callback(None, exc)
            else:
                host.conn_stats.opened += 1
                self.loop.create_task(self._on_transport(UpstreamConnection(self, host, sock),
                                                         callback))
        return Connect(self, host, opened)

    async def _on_transport(self, conn: UpstreamConnection, callback: Connected) -> None:
        """Put a connected socket on a uvloop transport (a coroutine in uvloop's API)."""
        try:
            tls = {} if self.tls is None else {
                "ssl": self.tls.context, "server_hostname": self.tls.name or conn.host.host}
            await self.loop.create_connection(lambda: conn.stream, sock=conn.sock, **tls)
        except OSError as exc:
            conn.sock.close()
            conn.stream.closed = True
            self.discard(conn, by_peer=True)
            callback(None, exc)
            return
        callback(conn, None)

    def enqueue(self, host: Host, waiter: Waiter) -> bool:
        """Wait for a connection; False when ``max_queue`` are waiting already."""
        if len(host.waiting) >= self.max_queue:
            return False
        host.waiting.append(waiter)
        return True

    def unqueue(self, host: Host, waiter: Waiter, timed_out: bool) -> None:
        try:
            host.waiting.remove(waiter)
        except ValueError:
            return
        if timed_out:
            host.conn_stats.queue_timeouts += 1

    def release(self, conn: UpstreamConnection, now: float) -> None:
        """Take back a connection whose last response was read in full."""
        conn.user = None
        host = conn.host
        if (self.closing or conn.stream.closed
                or (self.max_requests and conn.requests >= self.max_requests)):
            self.discard(conn)
        elif host.waiting:
            self.loop.call_soon(host.waiting.popleft().dequeued, conn)
        elif len(host.idle) >= self.max_idle:
            self.discard(conn)
        else:
            conn.idle_since = now
            host.idle.append(conn)

    def connect_socket(self, host: Host, callback: SocketConnected) -> Connect:
        """Open a connection whose socket leaves the pool at once (TCP mode): it
        holds one of ``host.active`` until ``socket_closed``."""
        return Connect(self, host, callback)

    def socket_closed(self, host: Host) -> None:
        host.active -= 1
        self.pass_turn(host)

    def detach(self, conn: UpstreamConnection) -> socket.socket:
        """Take a connection out of the pool's accounting for good (an upgrade)."""
        self._uncount(conn)
        return conn.stream.detach()

    def detach_transport(self, conn: UpstreamConnection) -> asyncio.Transport:
        """The same over TLS: the transport itself leaves."""
        self._uncount(conn)
        return conn.stream.hand_over()

    def _uncount(self, conn: UpstreamConnection) -> None:
        conn.user = None
        if conn.counted:
            conn.counted = False
            conn.host.active -= 1
            self.pass_turn(conn.host)

    def discard(self, conn: UpstreamConnection, by_peer: bool = False) -> None:
        conn.user = None
        host = conn.host
        try:
            host.idle.remove(conn)
        except ValueError:
            pass
        conn.stream.close()
        if conn.counted:
            conn.counted = False
            host.active -= 1
            if by_peer:
                host.conn_stats.closed_by_peer += 1
            else:
                host.conn_stats.closed_by_us += 1
            self.pass_turn(host)

    def pass_turn(self, host: Host) -> None:
        """A connection slot opened up (or a waiter gave up its turn): the first
        waiter may open a connection."""
        if host.waiting and self.can_open(host) and not self.closing:
            self.loop.call_soon(host.waiting.popleft().dequeued, None)

    def sweep(self, hosts: list[Host], now: float) -> None:
        """Close idle connections past idle_timeout (the oldest sit at the front)."""
        limit = now - self.idle_timeout
        for host in hosts:
            while host.idle and host.idle[0].idle_since <= limit:
                self.discard(host.idle[0])

    def close_idle(self, hosts: list[Host], for_good: bool = True) -> None:
        """Close the idle connections; ``for_good`` also stops taking any back."""
        self.closing = self.closing or for_good
        for host in hosts:
            while host.idle:
                self.discard(host.idle[0])

    @staticmethod
    def stats(hosts: list[Host]) -> dict[str, dict[str, int]]:
        """Per host: what the admin socket's stats command will show."""
        out = {}
        for host in hosts:
            counters = host.conn_stats
            idle = len(host.idle)
            out[host.name] = {
                "idle": idle, "busy": host.active - idle, "waiting": len(host.waiting),
                "inflight": host.inflight,
                **{name: getattr(counters, name) for name in PoolStats.__slots__}}
        return out


def _alive(sock: socket.socket) -> bool:
    """No EOF, reset or stray bytes waiting on an idle connection."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) is None
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False
