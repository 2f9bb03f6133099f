"""A worker: one event loop, its listeners, its clusters, its connections and
their timers. It applies the control process's state snapshots and reports
outcomes and counters back."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import mmap
import os
import socket
import ssl
from functools import partial
from typing import Callable, Iterator

import structlog

from .. import logs
from ..channel.link import Link
from ..channel.messages import Ack, Counters, Snapshot, Spans, Trial, Tripped, PassiveVerdict
from ..config import DEFAULT, Config, decode_routes
from ..http.client import ClientConnection
from ..http.codec import Reject
from ..http.identity import ClientIdentity
from ..http2.connection import Http2Connection
from ..http2.upstream import multiplexer
from ..http.lane import MAX_BODY, takes_off
from ..http.request_id import RequestIds
from ..tracing.context import NAME as TRACEPARENT
from ..tracing.recorder import Tracer
from ..io.reactor import Reactor
from ..io.stream import Stream
from ..kernel.libbpf import BpfError
from ..kernel.sockmap import Sockmap
from ..kernel.transport import Transport
from ..limits.per_client import PerClient
from ..logs.access_lines import access_log
from ..routing.route import Route
from ..worker_view import Clock, Stats, Tracked
from ..tcp.session import accept as accept_tcp
from ..upstream.cluster import Cluster
from ..upstream.host import Host
from ..routing.table import RouteTable
from ..tls.kernel_tls import KernelTls
from .listener_tls import WorkerTls

log = structlog.get_logger("l7lb.worker")
ACCEPTS_PER_WAKEUP = 64


def load_sockmap() -> Sockmap | None:
    """relay: sockmap's BPF program, or None (and why, logged): splice then."""
    try:
        return Sockmap()
    except (BpfError, OSError) as exc:
        log.warning("relay: sockmap not usable, splice used instead", reason=str(exc))
        return None


def sweep_interval(config: Config) -> float:
    """Timers are checked this often: fine enough for the shortest timeout."""
    t = config.timeouts
    shortest = min(t.connect, t.header, t.idle, t.request, t.backend_idle, t.client_body,
                   t.client_write, t.total or t.idle, config.pool.idle_timeout)
    return min(0.25, max(0.01, shortest / 10))


class Worker:
    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop,
                 listeners: list[socket.socket], link: Link,
                 tls_front: ssl.SSLContext | None = None,
                 client_counts: mmap.mmap | None = None) -> None:
        """``tls_front``: the context every TLS handshake starts in, made by the
        control process before forking, so that all workers share its session
        ticket keys (a client resumes on any worker); ``client_counts``: the
        per-client counts all workers share (limits/counts.py), or None."""
        self.config = config
        self.link = link
        self.version = 0          # of the last state snapshot applied
        self.loop = loop
        self.listeners = listeners      # its slot's, and any surplus an upgrade left
        self.snapshot: Snapshot | None = None      # the last applied (worker/orphan.py)
        self.clock = Clock(loop.time())
        self.stats = Stats()
        self.reactor = Reactor(loop)
        self.transport = Transport(config.congestion.pacer)
        self._builds = 0
        self.clusters = {name: self._cluster(name) for name in config.group_names()}
        self.default = self.clusters[DEFAULT]
        self.routes = RouteTable(config.routes, config.routes_default)
        self.connect_timeout: float = config.pool.connect_timeout or config.timeouts.connect
        self.response_timeout: float = config.retries.per_try_timeout or config.timeouts.request
        t = config.timeouts
        self.stream_timeout: float = min(t.idle, t.client_body, t.backend_idle, t.client_write)
        self.idle_timeout: float = t.idle
        self.connections: set[Tracked] = set()
        self.per_client = PerClient.of(config, client_counts, link.slot)
        self.request_ids = RequestIds(config.request_id) if config.request_id.enabled else None
        if self.request_ids is not None:
            takes_off(self.request_ids.lower)
        self.access = access_log(config.log, self.request_ids is not None)
        self.tracer = Tracer(config.tracing) if config.tracing.enabled else None
        if self.tracer is not None:
            takes_off(TRACEPARENT)      # a caller's context is read on the general path
        self.lane = True
        self.lane_head = config.limits.header_bytes
        self.lane_headers = config.limits.headers
        body_limit = config.limits.body_bytes
        self.lane_body = MAX_BODY if body_limit is None else min(MAX_BODY, body_limit)
        relay = config.balancer.relay
        # auto: TCP streams splice and try copy when bulk (relay_choice.py);
        # upgraded HTTP streams copy (small messages); large HTTP bodies of
        # known length splice.
        self.relay_engine: str = relay if relay != "auto" else (
            "auto" if config.balancer.mode == "tcp" else "copy")
        self.sockmap = load_sockmap() if relay == "sockmap" else None
        if relay == "sockmap" and self.sockmap is None:
            self.relay_engine = "splice"
        self.splice_bodies = relay != "copy"
        self.servers: list[asyncio.AbstractServer] = []   # HTTP: uvloop accepts
        tls = config.balancer.tls
        self.kernel_tls = KernelTls(loop, self._front, self._accepted, config.timeouts.header) \
            if tls is not None and tls.ktls != "off" else None
        self.tls = WorkerTls(tls, tls_front, self.kernel_tls.prepare if self.kernel_tls else None)
        self.stopping = False
        self.stopped = loop.create_future()
        self._tick = sweep_interval(config)
        self.trusted = [ipaddress.ip_network(c, strict=False)
                        for c in config.balancer.trusted_proxies] \
            if config.balancer.accept_proxy else None

    def _cluster(self, name: str) -> Cluster:
        group, config = self.config.group(name), self.config
        settings = config.balancer_of(name)
        multiplex = None if settings.protocol == "http1" else multiplexer(
            config.balancer.http2, config.limits.header_bytes, lambda: self.clock.now)
        return Cluster(name, settings, group.pool, group.health, group.retries,
                       group.breaker, self.reactor, self.transport, self, self._build_in_thread,
                       histogram=config.metrics.listen is not None, multiplex=multiplex)

    def cluster_for(self, route: Route | None) -> Cluster:
        """The group a request goes to: its route's, or the default one."""
        if route is None or route.cluster == DEFAULT:
            return self.default
        return self.clusters[route.cluster]

    def hosts(self) -> Iterator[Host]:
        for cluster in self.clusters.values():
            yield from cluster.hosts

    async def start(self) -> None:
        self.link.down.listen(self.loop, self._on_message)
        self.link.down.drain()     # the first snapshot, before any request
        await asyncio.gather(*(c.start() for c in self.clusters.values()))
        for listener in self.listeners:
            await self._listen(listener)
        self.loop.call_later(self._tick, self._sweep)
        self.loop.call_later(self.config.congestion.pacer.interval, self._pace)

    async def _listen(self, listener: socket.socket) -> None:
        kernel = self.kernel_tls
        if self.config.balancer.mode == "tcp":
            self.reactor.add_reader(listener.fileno(), partial(self._accept, listener))
        elif kernel is not None and kernel.missing is None:
            self.reactor.add_reader(listener.fileno(),
                                    partial(self._accept, listener, kernel.accept))
        else:
            front = self._front() if self.config.balancer.tls is not None else None
            made = self._accepted if kernel is None else kernel.user_space(self._accepted)
            self.servers.append(await self.loop.create_server(
                lambda: Stream(made=made), sock=listener, backlog=socket.SOMAXCONN,
                ssl=front, ssl_handshake_timeout=self.config.timeouts.header if front else None))

    def _pace(self) -> None:
        self.transport.pace(list(self.hosts()))
        if not self.stopping:
            self.loop.call_later(self.config.congestion.pacer.interval, self._pace)

    def _front(self) -> ssl.SSLContext:
        return self.tls.front()

    def _accept(self, listener: socket.socket,
                handle: Callable[[socket.socket], None] | None = None) -> None:
        """Accept what waits: TCP sessions, or (``handle``) TLS sockets for kernel TLS."""
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: skip this wake-up rather than spin.
                log.error("accept failed", error=exc.strerror, errno=errno.errorcode.get(exc.errno or 0))
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if handle is not None:
                handle(sock)        # admitted once the handshake is done, as uvloop's are
            elif not self._admit(address[0]) or self._limited(address[0]):
                sock.close()
            else:
                accept_tcp(self, sock, address[0])

    def _accepted(self, stream: Stream) -> None:
        """An HTTP client connection, accepted by uvloop."""
        peer, port, *_ = stream.sock.getpeername()
        if stream.tls is not None:
            self.stats.handshakes += 1
            self.stats.resumed += stream.tls.session_reused
        if not self._admit(peer):
            stream.close()
        elif (refusal := self._limited(peer)) is not None:
            ClientConnection(self, stream, peer, port).reject_now(Reject(429, refusal))
        elif stream.tls is not None and stream.tls.selected_alpn_protocol() == "h2":
            who = ClientIdentity(peer, stream.tls, self.config.balancer, self.access, port,
                                 self.request_ids.name if self.request_ids else b"")
            who.speaks("h2")
            self.stats.h2_connections += 1
            Http2Connection(self, stream, who)
        else:
            ClientConnection(self, stream, peer, port)

    def speak_h2c(self, conn: Tracked, stream: Stream, who: ClientIdentity,
                  first: bytes) -> None:
        """An HTTP/1.1 connection opened with the HTTP/2 preface
        (http2.cleartext): an Http2Connection takes it over."""
        self.connections.discard(conn)
        who.speaks("h2c")
        self.stats.h2_connections += 1
        h2 = Http2Connection(self, stream, who)
        if self.per_client is not None:
            self.per_client.pass_on(conn, h2)
        h2.on_data(first)

    def _admit(self, peer: str) -> bool:
        """Within limits.connections, and (accept_proxy) from a trusted balancer."""
        if len(self.connections) >= self.config.limits.connections:
            self.stats.refused += 1
            return False
        if self.trusted is not None and not self._trusted(peer):
            self.stats.untrusted += 1
            return False
        self.stats.accepted += 1
        return True

    def _limited(self, peer: str) -> str | None:
        """Why the limits per client address refuse a new connection, or None."""
        return None if self.per_client is None else self.per_client.admit(peer)

    def _trusted(self, address: str) -> bool:
        peer = ipaddress.ip_address(address)
        return any(peer in network for network in self.trusted or ())

    def track(self, conn: Tracked) -> None:
        self.connections.add(conn)
        if self.per_client is not None:
            self.per_client.hold(conn)     # the connection just admitted, if any

    def forget(self, conn: Tracked) -> None:
        self.connections.discard(conn)
        if self.per_client is not None:
            self.per_client.release(conn)
        if self.stopping and not self.connections and not self.stopped.done():
            self.stopped.set_result(None)

    def _sweep(self) -> None:
        now = self.clock.now = self.loop.time()
        for conn in list(self.connections):
            conn.check(now)
        for cluster in self.clusters.values():
            cluster.sweep(now)
        self.report()
        logs.flush()
        self.loop.call_later(self._tick, self._sweep)

    def _build_in_thread(self, make: Callable[[], object], done: Callable[[object], None]) -> None:
        """Hash tables are built in a thread and swapped in by the loop; a build
        overtaken by a newer one is dropped."""
        self._builds += 1
        ticket = self._builds

        def finished(future: asyncio.Future[object]) -> None:
            if future.exception() is not None:
                log.error("balancer table build failed", error=repr(future.exception()))
            elif ticket == self._builds:
                done(future.result())

        self.loop.run_in_executor(None, make).add_done_callback(finished)

    # -- the control process -------------------------------------------
    def report(self) -> None:
        """Send the counters and each host's tally to the control process."""
        link = self.link
        hosts = list(self.hosts())
        link.up.send(Counters(link.slot, os.getpid(), self.stats.accepted,
                              len(self.connections), link.up.ring.dropped,
                              self.stats.rejected, self.stats.refused + self.stats.untrusted,
                              {name: c.stats() for name, c in self.clusters.items()},
                              self.transport.summary(hosts, self.clock.now),
                              {name: marks for c in self.clusters.values()
                               for name, marks in c.breakers.take_marks().items()},
                              [route.requests for route in self.routes.routes],
                              (self.stats.handshakes, self.stats.resumed),
                              (0, 0) if self.per_client is None else
                              (self.per_client.refused_connections,
                               self.per_client.refused_requests),
                              {name: c.take_tallies() for name, c in self.clusters.items()},
                              (self.stats.h2_connections, self.stats.h2_streams,
                               self.stats.h2_calmed),
                              {} if self.kernel_tls is None else self.kernel_tls.counts))
        if self.tracer is not None and (self.tracer.spans or self.tracer.dropped):
            link.up.send(Spans(link.slot, *self.tracer.take()))

    # -- what clusters tell the control process at once (upstream Signals) --
    @property
    def slot(self) -> int:
        return self.link.slot

    def verdict(self, cluster: str, backend: str, reason: str) -> None:
        """A passive health verdict."""
        log.warning("backend failing, taken out in this worker", backend=backend, reason=reason)
        self.link.up.send(PassiveVerdict(self.link.slot, cluster, backend, reason))

    def tripped(self, cluster: str, backend: str, reason: str) -> None:
        log.warning("breaker tripped in this worker", backend=backend, reason=reason)
        self.link.up.send(Tripped(self.link.slot, cluster, backend, reason))

    def trial(self, cluster: str, backend: str, result: str) -> None:
        self.link.up.send(Trial(self.link.slot, cluster, backend, result))

    def _on_message(self, message: object) -> None:
        if isinstance(message, Snapshot) and message.version > self.version:
            self.apply(message)
            self.snapshot = message
            self.link.up.send(Ack(self.link.slot, os.getpid(), message.version))

    def apply(self, snapshot: Snapshot) -> None:
        """Take a new state: each cluster its own hosts; a new route table
        (requests under way keep the route they took)."""
        if snapshot.routes and snapshot.routes != self.routes.raw:
            self.routes = RouteTable(*decode_routes(snapshot.routes), raw=snapshot.routes)
        self.tls.apply(snapshot.certificates, snapshot.tickets)
        for name, cluster in self.clusters.items():
            cluster.update([s for s in snapshot.backends if s.cluster == name],
                           resolve=self.version > 0)
        self.version = snapshot.version

    async def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight work finish within ``grace``, then cut the rest."""
        self.stopping = True
        for server in self.servers:
            server.close()
        for listener in self.listeners:
            if not self.servers:
                self.reactor.remove_reader(listener.fileno())
            listener.close()       # this copy: a process taking over holds its own
        for cluster in self.clusters.values():
            cluster.close()
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
        for cluster in self.clusters.values():
            cluster.close()
        log.info("pool stats", clusters={name: c.stats() for name, c in self.clusters.items()})
        if self.sockmap is not None:
            self.sockmap.close()

