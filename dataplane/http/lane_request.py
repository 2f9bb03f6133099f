"""The fast lane's side of one client connection: the one request it carries
at a time, from the read that holds it whole to the read that holds its
whole answer (lane.py judges both reads).

One LaneRequest lives as long as its client connection and is reused for
each request on it, so the lane makes no object per request. A request
that meets anything the lane cannot prove simple (a second read from the
client, an answer in pieces, a host declared down, a deadline) becomes an
Exchange where it stands (``hand_over``), and the general path finishes it.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Protocol

from ..upstream.cluster import Cluster
from ..upstream.host import Host
from ..upstream.connection import UpstreamConnection
from ..upstream.outcome import ErrorKind
from . import codec
from .codec import Reject
from .deadline import RESPONSE
from .exchange import Exchange
from .identity import ClientIdentity
from .lane import simple_request, simple_response
from .request import TOO_MANY
from .request_body import RequestBody
from .request_id import echoed
from .request_log import traced
from .timer import Timer

if TYPE_CHECKING:
    from ..logs.access_lines import AccessLog
    from ..tracing.recorder import Trace
    from ..routing.route import Route
    from ..worker_view import WorkerView

_monotonic = time.monotonic


class LaneOutput(Protocol):
    """Where the lane writes a response (a client's Stream, or an HTTP/2
    stream's converter: http2/stream_lane.py)."""
    def write(self, data: bytes) -> object: ...
    def shared_socket(self) -> socket.socket: ...   # the client's, for per-backend tuning


class LaneClient(Protocol):
    """What the lane uses of its client connection."""
    @property
    def stream(self) -> LaneOutput: ...
    who: ClientIdentity         # its address, its lines for the head, its access-line prefix
    access: "AccessLog | None"
    closing: bool
    timer: Timer                # the connection's one deadline

    def reject_now(self, reject: Reject) -> None: ...
    def shutdown(self) -> None: ...     # the worker is stopping
    def adopt(self, method: bytes, target: bytes, started: float) -> Exchange: ...


class LaneRequest:
    __slots__ = ("client", "worker", "response_timeout", "ids", "echo", "tracer", "conn", "host",
                 "cluster", "route", "key", "started", "method", "target", "forward", "body_size",
                 "request_id", "trace", "__weakref__")
    # What a text access line asks beyond these (logs/access_text.Details): a
    # lane request went out at once, in one try, on HTTP/1.1 to the backend.
    sends = 1
    kind = ErrorKind.NONE
    version = "1.1"
    # The request under way (set as it is sent; ``conn`` is None between requests).
    host: Host
    cluster: Cluster
    route: "Route | None"
    key: bytes | None
    started: float
    method: bytes
    target: bytes
    forward: bytes
    body_size: int              # bytes of body sent with it

    def __init__(self, client: LaneClient, worker: "WorkerView") -> None:
        self.client = client
        self.worker = worker
        self.conn: UpstreamConnection | None = None
        # The deadline when neither a route nor timeouts.total decides it (0 when they may).
        self.response_timeout = (worker.response_timeout if worker.config.timeouts.total is None
                                 else 0.0)
        self.ids, self.tracer = worker.request_ids, worker.tracer   # kept: read per request
        self.echo = self.ids is not None and self.ids.echo
        self.request_id = b""          # the request's, when IDs are on
        self.trace: Trace | None = None     # the request's, when tracing is on

    @property
    def sent_at(self) -> float:
        return self.started      # sent as it was read

    def carry(self, data: bytes) -> bool:
        """Carry ``data`` if it is one simple request; False leaves it to the
        parser (nothing of it has been acted on then)."""
        worker, client, ids = self.worker, self.client, self.ids
        # Without request IDs the proxy's lines end the head as they are; with
        # them, the ID goes between X-Forwarded-For and the rest.
        found = simple_request(data, client.who.tail if ids is None else b"", worker.lane_head,
                               worker.lane_headers, worker.lane_body)
        if found is None:
            return False
        forward, method, target, authority, body = found
        routes = worker.routes
        route: Route | None = None
        if routes.routes:
            if routes.needs_headers:
                return False
            route = routes.find(method, target, authority, ())
            if route is None if routes.refuses_unmatched else route is not None and not route.plain:
                return False
        cluster = worker.default if route is None else worker.cluster_for(route)
        key = None
        if cluster.hashed:
            if cluster.key_needs_headers:
                return False
            key = cluster.key_of(client.who.peer, target, ())
        if ids is not None:
            pool = ids.pool
            request_id = self.request_id = pool.pop() if pool else ids.refill()   # ids.new()
            who = client.who
            forward = forward + who.before_id + request_id + who.after_id
        tracer = self.tracer
        if tracer is not None:
            # The lane carries no caller's context (lane.takes_off): a new trace, at
            # tracing.ratio (drawn here, as tracer.begin would, a call less per request).
            trace = self.trace = tracer.start() if tracer.draw() < tracer.ratio else None
            if trace is not None:
                forward = b"%b%b\r\n" % (forward[:-2], trace.line)
        per_client = worker.per_client
        if per_client is not None and not per_client.allow_request(client):
            client.reject_now(Reject(429, TOO_MANY,
                                     ids.line(self.request_id) if ids is not None else b""))
            return True
        if route is not None:
            route.requests += 1
        now = _monotonic()
        host = cluster.choose(key)
        conn = None if host is None else cluster.lease(host, now)
        if conn is None or host is None:
            self._off_lane(method, target, forward, data[-body:] if body else b"", cluster,
                           route, key, host, now)
            return True
        conn.user = self
        conn.requests += 1
        host.awaiting.add(self)
        if host.client_side or cluster.transport.clients_tuned:
            cluster.transport.serving(client.stream.shared_socket(), host)
        conn.stream.write(forward + data[-body:] if body else forward)
        self.conn = conn
        self.host = host
        self.cluster = cluster
        self.route = route
        self.key = key
        self.started = now
        self.method = method
        self.target = target
        self.forward = forward
        self.body_size = body
        if route is None and self.response_timeout:
            client.timer.expect_until(RESPONSE, now + self.response_timeout, None)
        else:
            self._deadline(route, now)
        return True

    def _deadline(self, route: "Route | None", now: float) -> None:
        """The deadline of a request the lane routed: its route's timeouts."""
        worker = self.worker
        per_try = worker.response_timeout
        total = worker.config.timeouts.total
        if route is not None:
            per_try = route.per_try_timeout or route.request_timeout or per_try
            total = route.total_timeout if route.total_timeout is not None else total
        total_at = None if total is None else now + total
        self.client.timer.expect_until(RESPONSE, now + per_try, total_at)

    def on_upstream_data(self, data: bytes) -> None:
        """The response (the upstream connection reports here until the
        request is done or handed over)."""
        client = self.client
        found = simple_response(data) if not client.closing else None
        if found is None:
            self.hand_over().on_upstream_data(data)
            return
        out, status, length = found
        if self.echo:
            out = echoed(out, length, self.ids.line(self.request_id))  # type: ignore[union-attr]  # echo: ids set
        client.stream.write(out)
        host, conn, cluster = self.host, self.conn, self.cluster
        assert conn is not None
        self.conn = None
        host.awaiting.discard(self)
        now = _monotonic()
        ms = (now - self.started) * 1000
        cluster.answered(host, conn, status, ms, self.body_size, length, now)
        # request_log.log_request, written out: a call less per request on the lane
        # (scripts/request-cost --instructions: 0.9k of 37k instructions); tests/test_lane.py
        # compares the two paths' access lines.
        stats = self.worker.stats
        stats.requests += 1
        if status >= 500:
            stats.errors += 1
        access = client.access
        if access is not None:
            route = self.route
            access.request(client.who.log_prefix, self.method, self.target, status, host.name,
                           self.body_size, length, ms, "", route.name if route is not None
                           else None, cluster.name if route is not None else None,
                           self.request_id, self)
        if self.trace is not None:
            traced(self.trace, self.method, self.target, status, host.name, cluster.name,
                   self.route, "", self, client.who)
        client.timer.idle(now)
        if self.worker.stopping:
            client.shutdown()

    def on_upstream_closed(self, exc: OSError | None) -> None:
        self.hand_over().on_upstream_closed(exc)

    def host_down(self) -> None:
        """The host was declared down before it answered."""
        self.hand_over().host_down()

    def hand_over(self) -> Exchange:
        """The request, under way, becomes an Exchange where it stands."""
        conn, host = self.conn, self.host
        assert conn is not None, "a lane request is under way"
        self.conn = None
        host.awaiting.discard(self)
        exchange = self.client.adopt(self.method, self.target, self.started)
        exchange.request_id, exchange.trace = self.request_id, self.trace
        exchange.routed(self.cluster, self.route, self.key, self.forward)
        exchange.sent(conn, self.body_size)
        return exchange

    def _off_lane(self, method: bytes, target: bytes, forward: bytes, body: bytes,
                  cluster: Cluster, route: "Route | None", key: bytes | None,
                  host: Host | None, now: float) -> None:
        """A request read whole and routed that cannot be sent on the lane (no
        idle connection, no host): an Exchange takes it from here, in the
        order the parser would have given it (a body after the start)."""
        exchange = self.client.adopt(method, target, now)
        exchange.request_id, exchange.trace = self.request_id, self.trace
        exchange.routed(cluster, route, key, forward)
        self._deadline(route, now)
        if body:
            exchange.body = RequestBody(codec.LENGTH, len(body))
            exchange.start(host)
            exchange.request_body(body)
            exchange.request_end([])
        else:
            exchange.request_complete = True
            exchange.start(host)
