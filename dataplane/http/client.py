"""The client side of HTTP proxying: one ClientConnection per accepted socket.

It owns its parser and its one deadline. A read that holds one whole simple
request goes on the fast lane (lane.py): the validated head goes upstream
as bytes on a pooled connection, the response comes back the same way, and
no per-request object is made. Everything else is parsed with httptools:
pipelined requests are queued (answered in order, one at a time), head
limits are enforced, and each request gets an Exchange (exchange.py) that
carries it to a host and the response back. A lane request that meets
anything but a simple response is handed to an Exchange where it stands.

Memory stays bounded: reading from the client stops while a pipelined request
waits, while the upstream write buffer is over ``limits.buffer``, or while a
body is spliced in the kernel.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING, cast

import httptools
import structlog

from ..io.relay import SplicePump
from ..io.stream import Stream
from ..proxyproto.header import Addresses, ProxyError, parse
from ..upstream.cluster import Cluster
from ..upstream.host import Host
from ..upstream.outcome import ErrorKind
from ..upstream.pool import UpstreamConnection
from . import codec, identity, request
from .codec import NONE, Reject
from .deadline import CONNECT, HEAD, IDLE, LINGER, NEVER, QUEUE, RESPONSE, STREAM, stream_expiry
from .exchange import Exchange
from .lane import simple_request, simple_response
from .request import RequestHead
from .request_reader import Body, RequestReader
from .routed import edited, own_answer

if TYPE_CHECKING:
    from ..logs.access_lines import AccessLog
    from ..routing.route import Route
    from ..site import Site

log = structlog.get_logger("l7lb.http")

LINGER_SECONDS = 2.0   # to drain a client's unread input before closing
_monotonic = time.monotonic
TOO_MANY = "too many requests from this address (limits.per_client_rate)"


class ClientConnection:
    __slots__ = (
        "site", "limits", "stream", "reader", "peer", "proxied", "preamble", "queue",
        "active", "closing", "closed", "upgrading",
        "feeding", "input_error", "splice", "spliced_seen", "awaiting_drain", "client_in",
        "backend_in", "stalled_since", "total_at", "deadline", "deadline_kind",
        "splice_bodies", "forwarded", "stripped", "tail", "access", "log_prefix", "lane_ok",
        "lane_conn", "lane_host", "lane_cluster", "lane_route", "lane_key", "lane_started",
        "lane_method", "lane_target", "lane_forward", "lane_body", "lane_wait", "__weakref__")
    # The lane's request while one is under way (set as it is sent).
    lane_host: Host
    lane_cluster: Cluster
    lane_route: "Route | None"
    lane_key: bytes | None
    lane_started: float
    lane_method: bytes
    lane_target: bytes
    lane_forward: bytes
    lane_body: int

    def __init__(self, site: "Site", stream: Stream, peer: str) -> None:
        self.site = site
        self.limits = site.config.limits
        # The client's addresses; with accept_proxy, from its PROXY header first.
        self.proxied: Addresses | None = None
        self.preamble: bytes | None = b"" if site.config.balancer.accept_proxy else None
        self.stream = stream
        stream.own(self)
        # TLS: the socket carries ciphertext, so no splice; X-Forwarded-Proto says so.
        self.splice_bodies = site.splice_bodies and stream.tls is None
        self.forwarded, self.stripped = identity.forwarding(stream.tls, site.config.balancer.tls)
        self.access: AccessLog | None = site.access
        self._identify(peer.encode())
        self.reader = RequestReader(self, self.limits)     # the general path's parser
        # Head-complete requests, [0] the active one: a list (56 bytes empty, a
        # deque is 760) since idle connections are what memory is spent on.
        self.queue: list[Exchange] = []
        self.active: Exchange | None = None
        self.closing = False          # no further requests: close after the current one
        self.closed = False
        self.upgrading = False
        self.feeding = False          # inside parser.feed_data: bytes of it may follow
        self.input_error: Reject | None = None  # answered once the active exchange is done
        self.splice: SplicePump | None = None     # request body moving in the kernel
        self.spliced_seen = 0
        self.awaiting_drain = False
        self.client_in = self.backend_in = site.clock.now   # last byte from each side
        self.stalled_since: float | None = None   # a response held back for the client
        self.total_at = NEVER       # timeouts.total of the active request
        self.deadline = 0.0
        self.deadline_kind = HEAD
        # The fast lane: what takes requests off it for this connection's life,
        # and the one request on it (lane_conn is set while it is under way).
        self.lane_ok = self.preamble is None and not self.stripped and site.lane
        self.lane_conn: UpstreamConnection | None = None
        # Its deadline, when neither a route nor timeouts.total decides it (0 when they may).
        self.lane_wait = site.response_timeout if site.config.timeouts.total is None else 0.0
        self.expect(HEAD, site.config.timeouts.header)
        site.track(self)

    def _identify(self, peer: bytes) -> None:
        """The client's address and what follows from it for every request."""
        self.peer = peer
        self.tail = b"X-Forwarded-For: %b\r\n%b\r\n" % (peer, self.forwarded)
        self.log_prefix = self.access.prefix(peer, identity.tls_fields(self.stream.tls)) \
            if self.access is not None else b""

    # -- the fast lane -------------------------------------------------------
    def _lane(self, data: bytes) -> bool:
        """Carry ``data`` on the fast lane if it is one simple request; False
        leaves it to the parser (nothing of it has been acted on then)."""
        site = self.site
        found = simple_request(data, self.tail, site.lane_head, site.lane_headers,
                               site.lane_body)
        if found is None:
            return False
        forward, method, target, authority, body = found
        routes = site.routes
        route: Route | None = None
        if routes.routes:
            if routes.needs_headers:
                return False
            route = routes.find(method, target, authority, ())
            if route is None if routes.fallback == "none" else route is not None and not route.plain:
                return False
        cluster = site.default if route is None else site.cluster_for(route)
        key = None
        if cluster.hashed:
            if cluster.key_needs_headers:
                return False
            key = cluster.key_of(self.peer, target, ())
        per_client = site.per_client
        if per_client is not None and not per_client.allow_request(self):
            self.reject_now(Reject(429, TOO_MANY))
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
            cluster.transport.serving(self.stream.shared_socket(), host)
        conn.stream.write(forward + data[-body:] if body else forward)
        self.lane_conn = conn
        self.lane_host = host
        self.lane_cluster = cluster
        self.lane_route = route
        self.lane_key = key
        self.lane_started = now
        self.lane_method = method
        self.lane_target = target
        self.lane_forward = forward
        self.lane_body = body
        if route is None and self.lane_wait:
            self.deadline_kind = RESPONSE
            self.deadline = now + self.lane_wait
        else:
            self._lane_deadline(route, now)
        return True

    def _lane_deadline(self, route: "Route | None", now: float) -> None:
        """The deadline of a request the lane routed: its route's timeouts."""
        site = self.site
        per_try = site.response_timeout
        total = site.config.timeouts.total
        if route is not None:
            per_try = route.per_try_timeout or route.request_timeout or per_try
            total = route.total_timeout if route.total_timeout is not None else total
        self.deadline_kind = RESPONSE
        if total is None:
            self.deadline = now + per_try
        else:
            self.total_at = now + total
            self.deadline = min(now + per_try, self.total_at)

    def on_upstream_data(self, data: bytes) -> None:
        """The response to the lane's request (the lane's upstream connection
        reports here until it is done or handed over)."""
        found = simple_response(data) if not self.closing else None
        if found is None:
            self._hand_over().on_upstream_data(data)
            return
        out, status, length = found
        self.stream.write(out)
        host, conn, cluster = self.lane_host, self.lane_conn, self.lane_cluster
        assert conn is not None
        self.lane_conn = None
        host.awaiting.discard(self)
        now = _monotonic()
        ms = (now - self.lane_started) * 1000
        cluster.answered(host, conn, status, ms, self.lane_body, length, now)
        site = self.site
        stats = site.stats
        stats.requests += 1
        if status >= 500:
            stats.errors += 1
        if self.access is not None:
            route = self.lane_route
            self.access.request(self.log_prefix, self.lane_method, self.lane_target, status,
                                host.name, self.lane_body, length, ms, "",
                                route.name if route is not None else None,
                                cluster.name if route is not None else None)
        self.total_at = NEVER
        if site.stopping:
            self.close_gracefully()
            return
        self.deadline_kind = IDLE
        self.deadline = now + site.idle_timeout

    def on_upstream_closed(self, exc: OSError | None) -> None:
        self._hand_over().on_upstream_closed(exc)

    def host_down(self) -> None:
        """The lane's host was declared down before it answered."""
        self._hand_over().host_down()

    def _hand_over(self) -> Exchange:
        """The lane's request, under way, becomes an Exchange where it stands."""
        conn, host = self.lane_conn, self.lane_host
        assert conn is not None, "a lane request is under way"
        self.lane_conn = None
        host.awaiting.discard(self)
        exchange = Exchange(self, self.site, self.lane_method, self.lane_target, "1.1", True,
                            self.lane_started)
        exchange.routed(self.lane_cluster, self.lane_route, self.lane_key, self.lane_forward)
        exchange.sent(conn, self.lane_body)
        self.queue.append(exchange)
        self.active = exchange
        self.client_in = self.backend_in = self.site.clock.now
        return exchange

    def _off_lane(self, method: bytes, target: bytes, forward: bytes, body: bytes,
                  cluster: Cluster, route: "Route | None", key: bytes | None,
                  host: Host | None, now: float) -> None:
        """A request read whole and routed by the lane that cannot be sent on
        it (no idle connection, no host): an Exchange takes it from here, in
        the order the parser would have given it (a body after the start)."""
        exchange = Exchange(self, self.site, method, target, "1.1", True, now)
        exchange.routed(cluster, route, key, forward)
        self.queue.append(exchange)
        self.active = exchange
        self._lane_deadline(route, now)
        if body:
            exchange.framing, exchange.remaining = codec.LENGTH, len(body)
            exchange.start(host)
            exchange.request_body(body)
            exchange.request_end([])
        else:
            exchange.request_complete = True
            exchange.start(host)

    # -- input -----------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        if self.lane_conn is not None:
            self._hand_over()            # more from the client: the parser takes over
        elif self.lane_ok and self.active is None and self.reader.head is None \
                and self.reader.body is None and not self.closing and self._lane(data):
            return
        self.client_in = self.site.clock.now
        if self.preamble is not None:
            data = self._proxy_header(data) or b""
            if not data:
                return
        if self.input_error is not None or self.closing and self.active is None:
            return   # lingering: discard what the client still sends
        self.feeding = True
        try:
            self.reader.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrading = True
            self.queue[-1].upgrade_tail = data[upgrade.args[0]:]
        except httptools.HttpParserError as exc:
            self._input_failed(exc)
            return
        finally:
            self.feeding = False
        self._after_input()

    def _proxy_header(self, data: bytes) -> bytes | None:
        """accept_proxy: collect and read the PROXY header; what follows it, or
        None while it is incomplete (a bad one closes the connection)."""
        data = (self.preamble or b"") + data
        try:
            read = parse(data)
        except ProxyError as exc:
            log.info("connection refused", client=self.peer.decode(), reason=str(exc))
            self.site.stats.untrusted += 1
            self.abort()
            return None
        if read is None:
            self.preamble = data
            return None
        addresses, size = read
        self.preamble = None
        if addresses is not None:
            self.proxied = addresses
            self._identify(addresses.src.encode())
        return data[size:]

    def addresses(self) -> Addresses:
        """Who the client is and what it connected to: as a trusted balancer's
        PROXY header said, or as the socket says."""
        if self.proxied is None:
            self.proxied = identity.socket_addresses(self.stream.shared_socket())
        return self.proxied

    def _input_failed(self, exc: httptools.HttpParserError) -> None:
        cause = exc.__context__
        if isinstance(cause, Reject):
            reject = cause
        elif cause is not None:
            log.error("request handling failed", client=self.peer.decode(), exc_info=cause)
            reject = Reject(500, "internal error")
        else:
            reject = Reject(400, f"malformed request: {exc}")
        self.reject_later(reject)

    def _after_input(self) -> None:
        active = self.active
        if active is not None and active.splice_request_body():
            return
        self.update_reading()

    def on_eof(self) -> None:
        if self.lane_conn is not None:
            self.closing = True          # the answer comes, then the connection closes
            return
        active = self.active
        if active is not None and not active.request_complete:
            active.abort(ErrorKind.CLIENT_ABORTED, "client closed before sending the whole request")
        elif active is None:
            self.close()
        else:
            self.closing = True   # let the response finish, then close

    def on_error(self, exc: OSError) -> None:
        if self.lane_conn is not None:
            self._hand_over()
        if self.active is not None:
            self.active.abort(ErrorKind.CLIENT_ABORTED,
                              f"client connection failed: {exc.strerror or exc}")
        else:
            self.close()

    def update_reading(self) -> None:
        """Read from the client only while nothing else is holding its bytes back."""
        want = (not self.closed and not self.upgrading and self.splice is None
                and len(self.queue) <= 1 and self.input_error is None)
        active = self.active
        if want and active is not None:
            upstream = active.upstream
            if upstream is None:
                want = active.pending_size < self.limits.buffer
            elif upstream.stream.queued and upstream.stream.pending >= self.limits.buffer:
                want = False
                if not self.awaiting_drain:
                    self.awaiting_drain = True
                    upstream.stream.when_drained(self._drained)
        if want or (self.closing and self.active is None):
            self.stream.start_reading()
        else:
            self.stream.stop_reading()

    def _drained(self) -> None:
        self.awaiting_drain = False
        self.update_reading()

    # -- what the request reader tells ----------------------------------------
    def request_begun(self) -> None:
        if self.active is None:
            self.expect(HEAD, self.site.config.timeouts.header)

    def head_read(self, head: RequestHead, upgrade: bool) -> Exchange:
        """A request head, read whole: checked, then queued as an Exchange."""
        site = self.site
        head.keep_alive = head.keep_alive and not self.closing
        if head.method == b"CONNECT":
            raise Reject(405, "CONNECT is not supported by a reverse proxy")
        per_client = site.per_client
        if per_client is not None and not per_client.allow_request(self):
            raise Reject(429, TOO_MANY)
        request.check(head, self.stripped, upgrade, site.config.limits.body_bytes,
                      self._reached)
        exchange = Exchange(self, site, head.method, head.target, head.version,
                            head.keep_alive, time.monotonic())
        exchange.head, exchange.upgrade = head, head.upgrade
        exchange.framing, exchange.remaining = head.framing, head.length
        self.queue.append(exchange)
        # A request without a body is whole in a moment (request_read, in
        # this same feed): it starts then, with no body to wait for.
        if self.active is None and (exchange.framing != NONE or exchange.upgrade):
            self.activate(exchange)
        return exchange

    def _reached(self) -> tuple[str, int]:
        address: tuple[str, int] = self.stream.shared_socket().getsockname()[:2]
        return address

    def request_read(self, body: Body, trailers: codec.Headers) -> None:
        """A request read whole (its body too)."""
        exchange = cast(Exchange, body)
        exchange.request_end(trailers)
        if self.active is None and self.queue and self.queue[0] is exchange:
            self.activate(exchange)

    # -- exchanges -------------------------------------------------------
    def activate(self, exchange: Exchange) -> None:
        self.active = exchange
        site = self.site
        total = site.config.timeouts.total
        head = exchange.head
        route = None
        if head is not None:
            routes = site.routes
            fields = head.fields
            route = routes.find(head.method, head.target, fields.authority,
                                head.headers) if routes.routes else None
            if route is not None:
                route.requests += 1
                if route.total_timeout is not None:
                    total = route.total_timeout
            answer = own_answer(route, routes.fallback, head.target, fields.authority)
            if answer is not None:
                exchange.answer(*answer)
                return
            if route is not None:
                exchange.target, fields.lines = edited(route, head.target, fields.lines)
            cluster = site.cluster_for(route)
            key = cluster.key_of(self.peer, exchange.target, head.headers) \
                if cluster.hashed else None
            exchange.routed(cluster, route, key, codec.request_head(
                head.method, exchange.target, fields, self.peer, self.forwarded,
                head.upgrade is not None))
        if total is not None:
            self.total_at = site.clock.now + total
        exchange.start(None)

    def is_active(self, exchange: Exchange) -> bool:
        """Is ``exchange`` the one being answered (not a pipelined one behind it)?"""
        return self.active is exchange

    def exchange_done(self, exchange: Exchange, reuse: bool) -> None:
        """The response is handed to the client stream in full."""
        exchange.finish(reuse)
        self.total_at, self.stalled_since = NEVER, None
        if self.splice is not None:      # backend answered before the body was sent
            self.splice.stop()
            self.splice = None
        if not exchange.request_complete:
            self.closing = True
        self.queue.pop(0)
        self.active = None
        if not exchange.client_keep_alive or self.closing or self.site.stopping:
            self.close_gracefully()
            return
        if self.queue:
            self.activate(self.queue[0])
            self.update_reading()
        elif self.input_error is not None:
            self.reject_now(self.input_error)
        else:
            timeouts = self.site.config.timeouts
            if not self.reader.inside:
                self.expect(IDLE, timeouts.idle)
            else:
                self.expect(HEAD, timeouts.header)
            self.stream.start_reading()     # nothing holds the client's bytes back now

    def may_splice_request(self) -> bool:
        """No splice is running and the parser is not inside a feed (bytes it has
        read must reach the backend first)."""
        return not self.feeding and self.splice is None

    def splice_request(self, exchange: Exchange, upstream: Stream, count: int) -> None:
        """Move the rest of a large request body to the backend in the kernel."""
        self.stream.stop_reading()
        pump = self.splice = SplicePump(self.site.reactor, self.stream.fd, upstream.fd, count,
                                        lambda error: self._request_spliced(exchange, pump, error))
        upstream.when_drained(pump.start)

    def _request_spliced(self, exchange: Exchange, pump: SplicePump,
                         error: OSError | None) -> None:
        self.splice = None
        if error is not None:
            exchange.abort(ErrorKind.RELAY_FAILED, f"request body relay failed: {error}")
            return
        # The parser still expects body bytes it never saw: start a fresh one.
        self.reader.restart()
        exchange.request_spliced(pump.moved)
        self.update_reading()

    def backend_active(self) -> None:
        """Bytes came from the backend for this connection: it is not idle."""
        self.backend_in = self.site.clock.now

    def hold_back(self, upstream: Stream, exchange: Exchange) -> None:
        """The client has limits.buffer of response unread: stop reading the
        backend until it takes it (within timeouts.client_write)."""
        upstream.stop_reading()
        self.stalled_since = self.site.clock.now
        self.watch_stream()

        def drained() -> None:
            self.stalled_since = None
            if not exchange.done:
                upstream.start_reading()
        self.stream.when_drained(drained)

    # -- the one deadline --------------------------------------------------
    def expect(self, kind: int, seconds: float) -> None:
        """Arm the deadline: ``kind`` must happen within ``seconds``."""
        self.deadline_kind = kind
        at = self.site.clock.now + seconds
        self.deadline = at if at < self.total_at else self.total_at

    def watch_stream(self) -> None:
        """Bodies are moving: look again after the shortest timeout that can
        apply; the sweep then works out which side, if any, ran out (a cheap
        deadline per request, exact when it matters)."""
        self.expect(STREAM, self.site.stream_timeout)

    def check(self, now: float) -> None:
        """Called by the worker's timer sweep."""
        if now < self.deadline:
            return
        if self.lane_conn is not None:
            self._hand_over()
        active = self.active
        if now >= self.total_at and active is not None:
            self.total_at = NEVER
            active.out_of_time()
            return
        kind = self.deadline_kind
        timeouts = self.site.config.timeouts
        if kind == STREAM:
            self._check_stream(now)
        elif kind == IDLE and now - max(self.client_in, self.backend_in) < timeouts.idle:
            self.deadline = max(self.client_in, self.backend_in) + timeouts.idle
        elif kind in (IDLE, LINGER):
            self.close()
        elif kind == HEAD:
            if self.reader.inside:
                self.reject_now(Reject(408, "request head not received in time"))
            else:
                self.close()
        elif active is None:
            self.close()
        elif kind == CONNECT:
            active.attempt_failed(504, ErrorKind.CONNECT_TIMEOUT, "connect to backend timed out")
        elif kind == RESPONSE:
            active.attempt_failed(504, ErrorKind.RESPONSE_TIMEOUT,
                                  "backend did not respond in time")
        elif kind == QUEUE:
            active.queue_timed_out()

    def _check_stream(self, now: float) -> None:
        active = self.active
        if active is None:
            self.close()
            return
        expired, at = self._stream_due(active, now)
        if expired is None:
            self.deadline = min(at, self.total_at)
        elif expired == "client_body":
            active.fail(408, ErrorKind.CLIENT_TIMEOUT,
                        "request body not received within timeouts.client_body")
        elif expired == "backend_idle":
            active.abort(ErrorKind.BACKEND_IDLE, "no byte from the backend within "
                                                 "timeouts.backend_idle")
        elif expired == "client_write":
            active.abort(ErrorKind.CLIENT_TIMEOUT,
                         "client took none of the response within timeouts.client_write")
        else:
            active.abort(ErrorKind.RESPONSE_TIMEOUT, "no data moved within timeouts.idle")

    def _stream_due(self, active: Exchange, now: float) -> tuple[str | None, float]:
        moved = self.splice.moved if self.splice is not None else 0
        if active.splice is not None:
            moved += active.splice.moved
        if moved != self.spliced_seen:      # kernel-side progress: both sides are alive
            self.spliced_seen = moved
            self.client_in = self.backend_in = now
            if self.stalled_since is not None:
                self.stalled_since = now
        stalled = self.stalled_since
        if stalled is None and active.splice is not None and active.splice.blocked_on_output:
            stalled = self.stalled_since = now   # a spliced response waits for the client
        return stream_expiry(now, self.site.config.timeouts, self.client_in, self.backend_in,
                             stalled, not active.request_complete and not active.responding,
                             active.responding and stalled is None)

    # -- errors and closing ---------------------------------------------
    def reject_later(self, reject: Reject) -> None:
        """Answer a bad request after the requests before it are done."""
        if self.closing and self.active is None:
            return      # answered and half-closed in this same read: the rest is discarded
        self.input_error = reject
        parsing = self.reader.body
        self.reader.drop()
        self.stream.stop_reading()
        if self.active is None:
            self.reject_now(reject)
        elif parsing is self.active:
            # Its own body is broken: the backend can never get a whole request.
            self.active.fail(reject.status, ErrorKind.CLIENT_ABORTED, reject.detail)

    def reject_now(self, reject: Reject) -> None:
        self.site.stats.rejected += 1
        log.info("request rejected", client=self.peer.decode(), status=reject.status,
                 reason=reject.detail)
        self.stream.write(codec.error_response(reject.status, reject.detail))
        self.close_gracefully()

    def close_gracefully(self) -> None:
        """Send what is queued, half-close, drain the client briefly, then close.

        Closing at once with unread input would make the kernel send RST, which
        can destroy the response before the client reads it.
        """
        if self.closed:
            return
        self.closing = True
        self.stream.shutdown_write()
        self.stream.start_reading()
        self.expect(LINGER, LINGER_SECONDS)

    def shutdown(self) -> None:
        """Worker is stopping: finish the current request, take no more."""
        self.closing = True
        if self.active is None and self.lane_conn is None:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        if self.lane_conn is not None:
            self._hand_over()
        self.closed = True
        for exchange in self.queue:
            exchange.cancel()
        self.queue.clear()
        self.active = None
        if self.splice is not None:
            self.splice.stop()
            self.splice = None
        self.stream.close()
        self.site.forget(self)

    def abort(self) -> None:
        self.stream.abort()
        self.close()

    def upgraded(self) -> socket.socket:
        """Hand the client socket to a byte relay after a 101 response."""
        self.closed = True
        self.site.forget(self)
        return self.stream.detach()

    def upgraded_transport(self) -> asyncio.Transport:
        """The same over TLS: the transport itself goes to the relay."""
        self.closed = True
        self.site.forget(self)
        return self.stream.hand_over()
