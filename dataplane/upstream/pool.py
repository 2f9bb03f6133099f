"""Upstream connections: opening them (non-blocking connect) and keeping idle
keep-alive ones per host for reuse, most recently used first (Envoy's
per-host connection pool).

Limits: ``pool.max_active`` connections per host (busy + idle + connecting),
``pool.max_idle`` idle ones kept, idle ones closed after ``pool.idle_timeout``,
``pool.max_requests_per_connection`` requests each; past ``max_active``,
requests wait in a FIFO of at most ``pool.max_queue``.

Each host's connections are a ``HostPool``; the ``Pool`` holds one per host
of its cluster. Only the Cluster calls the Pool.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import Callable, NamedTuple, cast

from ..config import PoolSettings
from ..io.reactor import Reactor
from ..io.stream import Stream
from ..kernel.transport import Transport
from .connect import Connect, SocketConnected
from .connection import HostPool, Multiplex, Multiplexed, PoolStats, UpstreamConnection, Waiter
from .host import Host

FRESH = 1.0     # seconds idle under which a pooled connection is reused unchecked


Connected = Callable[[UpstreamConnection | None, OSError | None], None]


class Tls(NamedTuple):
    context: ssl.SSLContext
    name: str | None           # SNI and the name verified; None: the backend's host


class Pool:
    """The host pools of one cluster in one worker."""

    def __init__(self, reactor: Reactor, settings: PoolSettings, transport: Transport,
                 max_connections: int | None = None, max_pending: int | None = None,
                 tls: Tls | None = None, multiplex: Multiplex | None = None) -> None:
        """``max_connections`` and ``max_pending``: this worker's share of the
        breaker limits, when lower than max_active and max_queue; ``tls``: the
        context and server name for TLS to the backends; ``multiplex``: each
        connection carries many requests, through the session it makes."""
        self.reactor = reactor
        self.multiplex = multiplex
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
        self.slots: dict[Host, HostPool] = {}

    def of(self, host: Host) -> HostPool:
        slot = self.slots.get(host)
        if slot is None:
            slot = self.slots[host] = HostPool(host)
        return slot

    def gone(self, host: Host) -> None:
        """The host left the cluster: its idle connections close; busy ones
        finish their requests, and the pool forgets it once all are closed."""
        slot = self.slots.get(host)
        if slot is not None:
            slot.gone = True
            self.close_idle([slot], for_good=False)
            self._forget_if_empty(slot)

    def _forget_if_empty(self, slot: HostPool) -> None:
        if slot.gone and not slot.open and self.slots.get(slot.host) is slot:
            del self.slots[slot.host]

    def acquire(self, slot: HostPool, now: float) -> UpstreamConnection | None:
        """An idle connection to reuse, most recently used first, or None. One
        idle for over FRESH seconds that the host has closed (EOF or reset
        not yet seen by the loop) is dropped here rather than failing the
        request; a fresher one is taken without that check (a syscall per
        request under load), since hosts close idle connections on timers
        of seconds, and the one retry covers what slips through. Multiplexed:
        a channel on the first session with room for another stream."""
        if self.multiplex is not None:
            return self._channel(slot)
        idle = slot.idle
        stale = now - FRESH
        while idle:
            conn = idle.pop()
            if conn.idle_since > stale or _alive(conn.sock):
                slot.stats.reused += 1
                return conn
            self.discard(conn, by_peer=True)
        return None

    def _channel(self, slot: HostPool) -> UpstreamConnection | None:
        for session in slot.shared:
            channel = session.channel()
            if channel is not None:
                slot.stats.reused += 1
                return channel
        return None

    def can_open(self, slot: HostPool) -> bool:
        """Room for one more connection; multiplexed, one is opened at a time
        (the requests meanwhile wait in the queue for its streams)."""
        return slot.open < self.max_active and not slot.opening

    def can_reopen(self, slot: HostPool) -> bool:
        """Room for a connection to try a request again on (even beside one
        being opened: the request cannot wait in the queue again)."""
        return slot.open < self.max_active

    def connect(self, slot: HostPool, callback: Connected) -> Connect:
        """Open a keep-alive connection for HTTP: the one place they are made."""
        def opened(sock: socket.socket | None, exc: OSError | None) -> None:
            if sock is None:
                slot.opening = False
                slot.stats.connect_failures += 1
                self.pass_turn(slot)
                callback(None, exc)
            else:
                slot.stats.opened += 1
                self.loop.create_task(self._on_transport(self._connection(slot, sock),
                                                         attempt, callback))

        def given_up() -> None:
            slot.opening = False
            self.pass_turn(slot)
        attempt = Connect(self, slot, opened, given_up)
        slot.opening = self.multiplex is not None and attempt.callback is not None
        return attempt

    def _connection(self, slot: HostPool, sock: socket.socket) -> UpstreamConnection:
        conn = UpstreamConnection(self, slot, sock)
        multiplex = self.multiplex
        if multiplex is not None:
            def made(_: Stream) -> None:
                multiplex(conn)         # the session is the connection's user from now on
            # The session must read from the first byte: a server sends its
            # SETTINGS at once, maybe before the connect's coroutine resumes.
            conn.stream = Stream(conn, made=made)
        return conn

    async def _on_transport(self, conn: UpstreamConnection, attempt: Connect,
                            callback: Connected) -> None:
        """Put a connected socket on a uvloop transport (a coroutine in uvloop's
        API). A connect cancelled meanwhile (its request went elsewhere) gets
        nothing: the connection is closed, not handed to a request that has
        moved on to another host."""
        try:
            if self.tls is None:
                await self.loop.create_connection(lambda: conn.stream, sock=conn.sock)
            else:
                await self.loop.create_connection(
                    lambda: conn.stream, sock=conn.sock, ssl=self.tls.context,
                    server_hostname=self.tls.name or conn.host.host)
        except OSError as exc:
            conn.slot.opening = False
            conn.sock.close()
            conn.stream.closed = True
            self.discard(conn, by_peer=True)
            if not attempt.cancelled:
                callback(None, exc)
            return
        if self.multiplex is not None:
            self._session(conn, attempt, callback)
            return
        if attempt.cancelled:
            self.discard(conn)
            return
        callback(conn, None)

    def _session(self, conn: UpstreamConnection, attempt: Connect, callback: Connected) -> None:
        """A new multiplexed connection (its session made with it): its first
        stream for the request that opened it, the next ones for the
        requests queued meanwhile."""
        slot = conn.slot
        slot.opening = False
        session = cast("Multiplexed | None", conn.user)     # made with the connection
        if session is None or conn.stream.closed:
            self.pass_turn(slot)
            if not attempt.cancelled:
                callback(None, ConnectionResetError(errno.ECONNRESET, "backend closed at once"))
            return
        slot.shared.append(session)
        if not attempt.cancelled:
            channel = session.channel()
            if channel is None:
                callback(None, ConnectionRefusedError("backend refused HTTP/2"))
            else:
                callback(channel, None)
        self._hand_streams(slot, session)

    def _hand_streams(self, slot: HostPool, session: Multiplexed) -> None:
        """Streams free on ``session`` go to the requests waiting in the queue;
        if some still wait, the first may open another connection."""
        while slot.waiting:
            channel = session.channel()
            if channel is None:
                self.pass_turn(slot)
                return
            self.loop.call_soon(slot.waiting.popleft().dequeued, channel)

    def streams_free(self, session: Multiplexed, conn: UpstreamConnection) -> None:
        """The session may take more streams (its backend's SETTINGS came)."""
        self._hand_streams(conn.slot, session)

    def session_closed(self, session: Multiplexed, conn: UpstreamConnection,
                       by_peer: bool) -> None:
        """A multiplexed connection is closing: no new stream goes to it."""
        slot = conn.slot
        if session in slot.shared:
            slot.shared.remove(session)
        self.discard(conn, by_peer)

    def enqueue(self, slot: HostPool, waiter: Waiter) -> bool:
        """Wait for a connection; False when ``max_queue`` are waiting already."""
        if len(slot.waiting) >= self.max_queue:
            return False
        slot.waiting.append(waiter)
        return True

    def unqueue(self, slot: HostPool, waiter: Waiter, timed_out: bool) -> None:
        try:
            slot.waiting.remove(waiter)
        except ValueError:
            return
        if timed_out:
            slot.stats.queue_timeouts += 1

    def release(self, conn: UpstreamConnection, now: float) -> None:
        """Take back a connection whose last response was read in full."""
        conn.user = None
        slot = conn.slot
        if conn.session is not None:
            conn.session.ended(conn, True)
            self._hand_streams(slot, conn.session)
            return
        if (self.closing or slot.gone or conn.stream.closed
                or (self.max_requests and conn.requests >= self.max_requests)):
            self.discard(conn)
        elif slot.waiting:
            self.loop.call_soon(slot.waiting.popleft().dequeued, conn)
        elif len(slot.idle) >= self.max_idle:
            self.discard(conn)
        else:
            conn.idle_since = now
            slot.idle.append(conn)

    def connect_socket(self, slot: HostPool, callback: SocketConnected) -> Connect:
        """Open a connection whose socket leaves the pool at once (TCP mode): it
        holds one of ``slot.open`` until ``socket_closed``."""
        return Connect(self, slot, callback, lambda: self.pass_turn(slot))

    def socket_closed(self, slot: HostPool) -> None:
        slot.open -= 1
        self.pass_turn(slot)
        self._forget_if_empty(slot)

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
        _close_reader(conn)
        if conn.counted:
            conn.counted = False
            conn.slot.open -= 1
            self.pass_turn(conn.slot)
            self._forget_if_empty(conn.slot)

    def discard(self, conn: UpstreamConnection, by_peer: bool = False) -> None:
        conn.user = None
        slot = conn.slot
        if conn.session is not None:        # a channel: its stream ends, not the connection
            conn.session.ended(conn, False)
            self._hand_streams(slot, conn.session)
            return
        _close_reader(conn)
        try:
            slot.idle.remove(conn)
        except ValueError:
            pass
        conn.stream.close()
        if conn.counted:
            conn.counted = False
            slot.open -= 1
            if by_peer:
                slot.stats.closed_by_peer += 1
            else:
                slot.stats.closed_by_us += 1
            self.pass_turn(slot)
            self._forget_if_empty(slot)

    def pass_turn(self, slot: HostPool) -> None:
        """A connection slot opened up (or a waiter gave up its turn): the first
        waiter may open a connection."""
        if slot.waiting and self.can_open(slot) and not self.closing:
            self.loop.call_soon(slot.waiting.popleft().dequeued, None)

    def sweep(self, now: float) -> None:
        """Close idle connections past idle_timeout (the oldest sit at the front)."""
        limit = now - self.idle_timeout
        for slot in list(self.slots.values()):
            while slot.idle and slot.idle[0].idle_since <= limit:
                self.discard(slot.idle[0])
            for session in [s for s in slot.shared if not s.streams and s.idle_since <= limit]:
                session.close()

    def close_idle(self, slots: list[HostPool] | None = None, for_good: bool = True) -> None:
        """Close the idle connections (of every host, or of ``slots``);
        ``for_good`` also stops taking any back."""
        self.closing = self.closing or for_good
        for slot in list(self.slots.values()) if slots is None else slots:
            while slot.idle:
                self.discard(slot.idle[0])
            for session in list(slot.shared):
                session.close()       # at once if idle, else once its streams end

    def stats(self, hosts: list[Host]) -> dict[str, dict[str, int]]:
        """Per host: what the admin socket's stats command will show."""
        out = {}
        for host in hosts:
            slot = self.of(host)
            counters = slot.stats
            out[host.name] = {
                "idle": len(slot.idle), "busy": slot.busy, "waiting": len(slot.waiting),
                "inflight": host.inflight, "streams": sum(s.streams for s in slot.shared),
                **{name: getattr(counters, name) for name in PoolStats.__slots__}}
        return out


def _close_reader(conn: UpstreamConnection) -> None:
    reader, conn.reader = conn.reader, None
    if reader is not None:
        reader.close()


def _alive(sock: socket.socket) -> bool:
    """No EOF, reset or stray bytes waiting on an idle connection."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) is None
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False
