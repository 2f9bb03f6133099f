"""The host side of one exchange on the general path: the host each try goes
to, the connection it gets there (the host's pooled one, a new one, or a
turn in the host's queue), the next host when a try fails before any
response byte, and letting all of it go.

The Cluster decides whether a host may take the request and whether the
retry budget allows another try; retry.py whether the request may be sent
again at all. An Attempt tells its exchange what came of it through
``Trying``: a connection to send on, or the error to answer with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..upstream.admission import OPEN, QUEUED
from ..upstream.cluster import Cluster
from ..upstream.host import Host
from ..upstream.outcome import ErrorKind, connect_error
from ..upstream.connection import UpstreamConnection
from . import retry
from .deadline import CONNECT, QUEUE

if TYPE_CHECKING:
    from ..routing.route import Route
    from ..upstream.connect import Connect
    from ..worker_view import WorkerView


class Trying(Protocol):
    """What an attempt asks of its exchange."""
    @property
    def done(self) -> bool: ...
    @property
    def replayable(self) -> bool: ...   # may go to another host (retry.replayable)

    def waiting(self, kind: int, seconds: float) -> None: ...   # no connection yet
    def attach(self, conn: UpstreamConnection, reused: bool) -> None: ...
    def fail(self, status: int, kind: ErrorKind, detail: str, headers: bytes = b"") -> None: ...
    def try_failed(self, host: Host, kind: ErrorKind) -> UpstreamConnection | None: ...


class Attempt:
    __slots__ = ("exchange", "cluster", "worker", "route", "key", "host", "connecting",
                 "queued", "tried")

    def __init__(self, exchange: Trying, cluster: Cluster, worker: "WorkerView",
                 route: "Route | None", key: bytes | None) -> None:
        self.exchange = exchange
        self.cluster = cluster
        self.worker = worker
        self.route = route
        self.key = key                     # the hash key, kept for a retry elsewhere
        self.host: Host | None = None
        self.connecting: Connect | None = None
        self.queued = False                # a turn in the host's queue is awaited
        self.tried: set[Host] | None = None  # hosts failed over from

    def start(self, host: Host | None) -> None:
        """On to ``host`` (chosen already), or to one the cluster chooses now."""
        if host is None:
            host = self.cluster.choose(self.key)
        if host is None:
            self.exchange.fail(503, ErrorKind.NO_HOST, "no backend available")
            return
        self._use(host)

    def under_way(self, host: Host) -> None:
        """The fast lane's try, already sent to ``host``, goes on from here."""
        self.host = host
        host.awaiting.add(self)

    def _use(self, host: Host) -> None:
        cluster, exchange = self.cluster, self.exchange
        self.host = host
        cluster.begin(host)
        host.awaiting.add(self)          # until its response head (see host_down)
        got = cluster.connection(host, self, self.worker.clock.now)
        if isinstance(got, UpstreamConnection):
            exchange.attach(got, reused=True)
        elif got is OPEN:
            self._open(host)
        elif got is QUEUED:
            self.queued = True
            exchange.waiting(QUEUE, self.worker.config.pool.queue_timeout)
        elif got.limit:
            exchange.fail(503, ErrorKind.OVERLOADED, f"backend {host.name} at breaker.{got.value}",
                          b"X-L7lb-Overloaded: %b\r\n" % got.value.encode())
        else:
            exchange.fail(503, ErrorKind.POOL_FULL,
                          f"backend {host.name} busy: pool.max_active and max_queue reached")

    def _open(self, host: Host) -> None:
        self.exchange.waiting(CONNECT, self.worker.connect_timeout)
        self.connecting = self.cluster.open(host, self._connected)

    def reconnect(self) -> bool:
        """Once more on the same host over a new connection (retry.reconnect_allowed
        said so); False when its pool has no room for one."""
        host = self._host()
        if not self.cluster.reconnect(host):
            return False
        self._open(host)
        return True

    def _host(self) -> Host:
        assert self.host is not None, "a host is known once started"
        return self.host

    def dequeued(self, conn: UpstreamConnection | None) -> None:
        """Our turn in the host's queue: a connection, or room to open one."""
        cluster = self.cluster
        if not self.queued or self.exchange.done:    # gone meanwhile: pass the turn on
            if conn is not None:
                cluster.give_back(conn, self.worker.clock.now)
            else:
                cluster.pass_turn(self._host())
            return
        self.queued = False
        if conn is not None:
            cluster.taken(conn)
            self.exchange.attach(conn, reused=True)
        else:
            self._open(self._host())

    def queue_timed_out(self) -> None:
        self.cluster.unqueue(self._host(), self, timed_out=True)
        self.queued = False
        self.exchange.fail(503, ErrorKind.QUEUE_TIMEOUT,
                           "no backend connection free within pool.queue_timeout")

    def _connected(self, conn: UpstreamConnection | None, exc: OSError | None) -> None:
        self.connecting = None
        if conn is None:
            self.failed(502, connect_error(exc), f"cannot connect to backend: {exc.strerror or exc}"
                        if exc is not None else "cannot connect to backend")
        elif self.exchange.done:
            self.cluster.discard(conn)
        else:
            self.exchange.attach(conn, reused=False)

    def answered(self) -> None:
        """A response head came: the request stays on this host."""
        self._host().awaiting.discard(self)

    # -- failing over ------------------------------------------------------------
    def failed(self, status: int, kind: ErrorKind, detail: str) -> None:
        """This try failed before any response byte: another host if the
        request can be replayed, retries are left and the budget allows, else
        the error answer."""
        other = self._next_host(budgeted=True)
        if other is None:
            self.exchange.fail(status, kind, detail)
        else:
            self._fail_over(other, kind)

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """A trailers-only answer (``headers``) with a grpc-status of
        retries.grpc_status: the call was not taken."""
        status = next((value for name, value in headers if name == b"grpc-status"), None)
        return status in self.cluster.retry_grpc

    def refused(self) -> bool:
        """After a ``refusal``, the request held whole: on to another host when
        one is allowed (True); otherwise the answer stands."""
        other = self._next_host(budgeted=True, resendable=True)
        if other is None:
            return False
        self._fail_over(other, ErrorKind.REFUSED_BY_STATUS)
        return True

    def host_down(self) -> None:
        """The host was declared down while this request waited for a
        connection or its response head: on to another host now if it can be
        replayed; if not, it keeps waiting (the verdict may be wrong, and it
        cannot be resent). The balancer's own decision, not a failure seen:
        exempt from the retry budget."""
        other = self._next_host(budgeted=False)
        if other is not None:
            self._fail_over(other, ErrorKind.HOST_DOWN)

    def _next_host(self, budgeted: bool, resendable: bool = False) -> Host | None:
        """``resendable``: the whole request is held to send again, whatever its method."""
        cluster, host, route = self.cluster, self._host(), self.route
        allowed = route.attempts if route is not None and route.attempts is not None \
            else cluster.retry_attempts
        if not retry.attempts_left(len(self.tried or ()), allowed) or not (
                resendable or self.exchange.replayable):
            return None
        other = cluster.choose_other(self.key, (self.tried or set()) | {host})
        if other is None or budgeted and not cluster.may_retry(host):
            return None
        return other

    def _fail_over(self, other: Host, kind: ErrorKind) -> None:
        host = self._host()
        upstream = self.exchange.try_failed(host, kind)
        self.cluster.retrying(host, first=self.tried is None)
        self.drop(upstream)
        self.tried = (self.tried or set()) | {host}
        self._use(other)

    # -- letting go ----------------------------------------------------------------
    def drop(self, upstream: UpstreamConnection | None) -> None:
        """Let go of the host and whatever connection this try had."""
        cluster, host = self.cluster, self._host()
        host.awaiting.discard(self)
        if self.queued:
            self.queued = False
            cluster.unqueue(host, self, timed_out=False)
        cluster.release(host)
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if upstream is not None:
            cluster.discard(upstream)

    def end(self, upstream: UpstreamConnection | None) -> None:
        """The exchange is over: its retries end, and its host is let go."""
        if self.tried is not None:
            self.cluster.retry_over()
        if self.host is not None:
            self.drop(upstream)
