"""TCP mode: each accepted connection is joined to a host's connection by a
byte relay (splice or copy), with half-close and resets passed through."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import structlog

from .. import logs
from ..io.relay import Relay
from ..io.relays import make_relay
from ..io.stream import reset
from ..proxyproto.header import Addresses, encode
from .client_hello import MAX_RECORD
from .preamble import MAX_PREAMBLE, Preamble, client_hello, proxy_header
from ..upstream.admission import NO_ROOM, OPEN
from ..upstream.outcome import ErrorKind, connect_error

if TYPE_CHECKING:
    from ..worker_view import WorkerView
    from ..upstream.cluster import Cluster
    from ..upstream.host import Host
    from ..upstream.connect import Connect

log = structlog.get_logger("l7lb.tcp")


def accept(worker: "WorkerView", sock: socket.socket, peer: str) -> None:
    """A TCP-mode connection: with accept_proxy, its PROXY header first; with
    routes, its TLS ClientHello's server name picks the group."""
    timeouts = worker.config.timeouts

    def session(proxied: Addresses | None, early: bytes) -> None:
        if not worker.routes.routes:
            TcpSession(worker, sock, peer, proxied, early)
            return

        def routed(name: str | None, data: bytes) -> None:
            cluster = _group_for(worker, name)
            if cluster is None:
                worker.stats.untrusted += 1
                log.info("connection refused", client=peer, reason=f"no route for {name!r}")
                reset(sock)
                sock.close()
            else:
                TcpSession(worker, sock, peer, proxied, data, cluster)
        Preamble(worker, sock, peer, client_hello, routed, "TLS ClientHello", timeouts.header,
                 MAX_RECORD, early)

    if worker.config.balancer.accept_proxy:
        Preamble(worker, sock, peer, proxy_header,
                 lambda read, data: session(read[0], data[read[1]:]), "PROXY header",
                 timeouts.connect, MAX_PREAMBLE)
    else:
        session(None, b"")


def _group_for(worker: "WorkerView", name: str | None) -> "Cluster | None":
    """The group a TLS server name is routed to (routes match on host only here)."""
    route = worker.routes.find(b"", b"/", (name or "").encode(), ())
    if route is None:
        return None if worker.routes.refuses_unmatched else worker.default
    route.requests += 1
    return worker.cluster_for(route)


class TcpSession:
    """From accept until the relay takes over: pick a host and connect.
    ``proxied``: the client a trusted PROXY header named; ``early``: the
    client's bytes that came with that header (sent on first)."""

    def __init__(self, worker: "WorkerView", sock: socket.socket, peer: str,
                 proxied: Addresses | None = None, early: bytes = b"",
                 cluster: "Cluster | None" = None) -> None:
        if proxied is not None:
            peer = proxied.src
        self.proxied, self.early = proxied, early
        self.worker, self.sock, self.peer = worker, sock, peer
        self.started = time.monotonic()
        self.deadline = worker.clock.now + worker.connect_timeout
        self.connecting: Connect | None = None
        cluster = self.cluster = cluster or worker.default
        host = cluster.choose(peer.encode())    # hashed by client address
        if host is None:
            self._refuse("no backend available")
            return
        admission = cluster.may_connect(host)
        if admission is not OPEN:
            limit = "pool.max_active" if admission is NO_ROOM else f"breaker.{admission.value}"
            self._refuse(f"{host.name} at {limit}")
            return
        self.host: Host = host
        cluster.begin(host)
        worker.track(self)
        self.connecting = cluster.connect_socket(host, self._connected)

    def _refuse(self, why: str) -> None:
        self.worker.stats.errors += 1
        log.warning("tcp connection refused", client=self.peer, reason=why)
        reset(self.sock)
        self.sock.close()

    def _failed(self, kind: ErrorKind, why: str) -> None:
        """The connect to the host failed: the client is reset."""
        self.cluster.release(self.host)
        self._report(0, kind)
        self._refuse(why)

    def _connected(self, upstream: socket.socket | None, exc: OSError | None) -> None:
        worker = self.worker
        worker.forget(self)
        self.connecting = None
        if upstream is None:
            why = (exc.strerror or exc) if exc is not None else "no socket"
            self._failed(connect_error(exc), f"connect to {self.host.name} failed: {why}")
            return
        self.cluster.breakers.connected(self.host)
        version = self.cluster.send_proxy
        first = (self._proxy_header(version) if version else b"") + self.early
        if first and upstream.send(first) != len(first):   # a fresh socket takes this much
            upstream.close()
            self.cluster.socket_closed(self.host)
            self._failed(ErrorKind.CONNECT_ERROR, "could not send the first bytes")
            return
        if self.host.client_side:
            worker.transport.serving(self.sock, self.host)
        relay = make_relay(worker.relay_engine, worker.reactor, self.sock, upstream,
                           self._closed, worker.config.limits.buffer, worker.sockmap)
        relay.idle_timeout = worker.config.timeouts.idle
        worker.track(relay)
        relay.start()

    def _proxy_header(self, version: str) -> bytes:
        """The PROXY header for this client, before any byte of its own."""
        addresses = self.proxied
        if addresses is None:
            (src, src_port, *_), (dst, dst_port, *_) = (self.sock.getpeername(),
                                                        self.sock.getsockname())
            addresses = Addresses(src, src_port, dst, dst_port)
        return encode(version, addresses)

    def _closed(self, relay: Relay) -> None:
        worker = self.worker
        worker.forget(relay)
        self.cluster.socket_closed(self.host)
        self.cluster.release(self.host)
        worker.stats.requests += 1
        ms = self._report(relay.moved, ErrorKind.NONE)
        if worker.config.log.access:
            logs.access("connection", {"client": self.peer, "backend": self.host.name,
                                       "bytes": relay.moved, "ms": ms, **relay.choices()})

    def _report(self, moved: int, kind: ErrorKind) -> float:
        ms = round((time.monotonic() - self.started) * 1000, 2)
        self.cluster.finished(self.host, 0, ms, moved, 0, kind, False)
        return ms

    def check(self, now: float) -> None:
        if now >= self.deadline and self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
            self.worker.forget(self)
            self._failed(ErrorKind.CONNECT_TIMEOUT, f"connect to {self.host.name} timed out")

    def shutdown(self) -> None:
        """Stopping: a connect in progress may finish; its relay then runs out the grace."""

    def abort(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
            self.worker.forget(self)
            self.cluster.release(self.host)
            reset(self.sock)
            self.sock.close()
