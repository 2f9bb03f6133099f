"""One request and its response, carried between a client and a host.

An Exchange asks its cluster for a host and a connection (pooled, new, or a
turn in the host's queue), writes the rewritten request head and streams the
body, then reads the response (response.py) and streams it to the client.
Large bodies of known length move by splice(2). Its progress is one State;
the request side's only independent fact is whether the whole request has
been read from the client (``request_complete``). When it ends it reports a
typed Outcome to the cluster.
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING

import httptools
import structlog

from ..io.relay import SplicePump
from ..upstream.cluster import IN_QUEUE, MAY_OPEN, NO_ROOM, Cluster
from ..upstream.outcome import ErrorKind, Outcome, connect_error
from . import rules
from .access import access_line
from .deadline import CONNECT, QUEUE, RESPONSE
from .response import ResponseReader
from .request import SPLICE_MIN, RequestSide
from .retry import Retries
from .routed import Routed
from .upgrade import join_streams
from .rules import NONE

if TYPE_CHECKING:
    from ..routing.route import Route
    from ..upstream.host import Host
    from ..upstream.pool import Connect, UpstreamConnection
    from .client import ClientConnection

log = structlog.get_logger("l7lb.http")


class State(enum.Enum):
    PENDING = "pending"          # parsed; behind an earlier request on its connection
    QUEUED = "queued"            # waiting for a connection to the host (pool.max_active)
    CONNECTING = "connecting"
    SENT = "sent"                # request head written; no response head yet
    RESPONDING = "responding"    # response head passed to the client; body streaming
    SPLICING = "splicing"        # the rest of the response body moves in the kernel
    DONE = "done"                # finished, failed, cancelled or upgraded


# Module-level names: a global is read ten times faster than an enum member.
PENDING, QUEUED, CONNECTING, SENT, RESPONDING, SPLICING, DONE = State
NO_ERROR = ErrorKind.NONE


class Exchange(RequestSide, Retries, Routed):
    __slots__ = (
        "client", "site", "cluster", "state", "target", "headers", "method", "version",
        "keep_alive", "upgrade", "upgrade_tail", "fields", "req_framing", "req_remaining",
        "request_complete", "pending", "pending_size", "host", "upstream", "connecting",
        "response", "splice", "reused", "attempts", "started", "bytes_in", "status",
        "error", "kind", "key", "tried", "route", "local", "wait")

    def __init__(self, client: "ClientConnection") -> None:
        self.client = client
        self.site = client.site
        self.cluster: Cluster | None = None
        self.state = PENDING
        self.target = b""
        self.headers: rules.Headers = []
        self.fields: rules.Fields | None = None
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.upgrade: bytes | None = None
        self.upgrade_tail = b""
        self.req_framing = NONE
        self.req_remaining = 0
        self.request_complete = False
        self.pending: list[bytes] = []      # request bytes waiting for a connection
        self.pending_size = 0
        self.host: Host | None = None
        self.upstream: UpstreamConnection | None = None
        self.connecting: Connect | None = None
        self.response: ResponseReader | None = None
        self.splice: SplicePump | None = None   # response body moving in the kernel
        self.reused = False                # on a pooled connection (retry candidate)
        self.attempts = 0
        self.started = time.monotonic()
        self.bytes_in = 0
        self.status = 0                    # set when the balancer answers itself
        self.error = ""
        self.kind = NO_ERROR
        self.key: bytes | None = None       # the hash key, kept for a retry elsewhere
        self.tried: set[Host] | None = None  # hosts failed over from (retries elsewhere)
        self.route: Route | None = None      # the route it took (None: the default group)
        self.local = False                  # answered by the balancer (respond, redirect)
        self.wait = self.site.response_timeout   # for the response head, per try

    @property
    def done(self) -> bool:
        return self.state is DONE

    @property
    def client_keep_alive(self) -> bool:
        """The client connection may carry another request after this one."""
        if self.error:
            return False
        response = self.response
        return response.client_keep_alive if response is not None else self.local and self.keep_alive

    @property
    def written(self) -> bool:
        """The request head went to this attempt's host; no response head yet."""
        return self.state is SENT

    @property
    def responding(self) -> bool:
        """The response head went to the client: an error can only cut it."""
        return self.state in (RESPONDING, SPLICING)

    def request_sent(self) -> None:
        if self.local:                  # answered already; now the request is whole
            self.client.exchange_done(self, False)
            return
        if self.state is SENT and self.client.is_active(self):
            self.client.arm(RESPONSE, self.wait)

    # -- choosing a host and a connection ----------------------------------
    def start(self) -> None:
        cluster = self.cluster = self.take_route()
        if cluster is None:
            return
        key = self.key = cluster.key_of(self.client.peer, self.target, self.headers) \
            if cluster.hashed else None
        host = cluster.choose(key)
        if host is None:
            self.fail(503, ErrorKind.NO_HOST, "no backend available")
            return
        self._use(host)

    def _use(self, host: "Host") -> None:
        site, cluster = self.site, self.cluster
        self.host = host
        cluster.begin(host)
        host.awaiting.add(self)          # until its response head (see host_down)
        got = cluster.connection(host, self, site.clock.now)
        if got is MAY_OPEN:
            self._open()
        elif got is IN_QUEUE:
            self.state = QUEUED
            self.client.arm(QUEUE, site.config.pool.queue_timeout)
        elif got is NO_ROOM:
            self.fail(503, ErrorKind.POOL_FULL,
                      f"backend {host.name} busy: pool.max_active and max_queue reached")
        elif got.__class__ is str:            # a breaker limit
            self.fail(503, ErrorKind.OVERLOADED, f"backend {host.name} at breaker.{got}",
                      b"X-L7lb-Overloaded: %b\r\n" % got.encode())
        else:
            self.attach(got, reused=True)

    def _open(self) -> None:
        self.state = CONNECTING
        self.client.arm(CONNECT, self.site.connect_timeout)
        self.connecting = self.cluster.pool.connect(self.host, self._connected)

    def dequeued(self, conn: "UpstreamConnection | None") -> None:
        """Our turn in the host's queue: a connection, or room to open one."""
        pool = self.cluster.pool
        if self.state is not QUEUED:          # gone meanwhile: pass the turn on
            if conn is not None:
                pool.release(conn, self.site.clock.now)
            else:
                pool.pass_turn(self.host)
            return
        if conn is not None:
            pool.backend_reused(conn)
            self.attach(conn, reused=True)
        else:
            self._open()

    def queue_timed_out(self) -> None:
        self.cluster.pool.unqueue(self.host, self, timed_out=True)
        self.fail(503, ErrorKind.QUEUE_TIMEOUT,
                  "no backend connection free within pool.queue_timeout")

    def _connected(self, conn: "UpstreamConnection | None", exc: OSError | None) -> None:
        self.connecting = None
        if conn is None:
            self.attempt_failed(502, connect_error(exc),
                                f"cannot connect to backend: {exc.strerror or exc}")
        elif self.done:
            self.cluster.pool.discard(conn)
        else:
            self.attach(conn, reused=False)

    def attach(self, conn: "UpstreamConnection", reused: bool) -> None:
        self.state = SENT
        self.reused = reused
        self.attempts += 1
        self.upstream = conn
        conn.user = self
        conn.requests += 1
        site, client = self.site, self.client
        if self.cluster.send_proxy and not reused:
            conn.stream.write(self.proxy_preface(self.cluster.send_proxy))
        transport = site.transport
        if conn.host.client_side or transport.clients_tuned:
            transport.serving(client.stream.shared_socket(), conn.host)
        # A refused upgrade may have carried the new protocol's first bytes.
        route = self.route
        self.response = ResponseReader(self.method, self.version, self.keep_alive,
                                       self.upgrade, bool(self.upgrade_tail), client.is_closing,
                                       route.response_edits if route is not None else None)
        head = rules.request_head(self.method, self.target, self.fields, client.peer,
                                  client.forwarded, self.upgrade is not None)
        if self.pending:
            head = b"".join([head, *self.pending])
            self.pending.clear()
            self.pending_size = 0
        conn.stream.write(head)
        if self.upgrade_tail:
            conn.stream.write(self.upgrade_tail)
        if self.request_complete:
            client.arm(RESPONSE, self.wait)
        else:
            client.arm_stream()
            if not self.splice_request_body():
                client.update_reading()

    # -- response ----------------------------------------------------------
    def on_upstream_data(self, data: bytes) -> None:
        client, response = self.client, self.response
        client.touch()
        try:
            response.feed(data)
        except httptools.HttpParserUpgrade as switch:
            self._switch_protocols(data[switch.args[0]:])
            return
        except httptools.HttpParserError as exc:
            self.fail(502, ErrorKind.BAD_RESPONSE, f"invalid response from backend: {exc}")
            return
        if response.started and self.state is SENT:
            self.state = RESPONDING
            self.host.awaiting.discard(self)
            if not response.complete:        # else the next deadline is the idle one
                client.arm_stream()
        if response.out:
            client.stream.write(response.take())
        if response.complete:
            client.exchange_done(self, self.request_complete and response.upstream_keep_alive)
        elif (response.may_splice(SPLICE_MIN) and client.splice_bodies
              and self.upstream.stream.tls is None):
            self._splice_response()
        elif client.stream.pending >= client.limits.buffer:
            client.hold_back(self.upstream.stream, self)

    def _splice_response(self) -> None:
        self.state = SPLICING
        upstream = self.upstream
        upstream.stream.stop_reading()
        self.splice = SplicePump(self.site.reactor, upstream.stream.fd, self.client.stream.fd,
                                 self.response.remaining, self._response_spliced)
        self.client.stream.when_drained(self.splice.start)

    def _response_spliced(self, error: OSError | None) -> None:
        pump, self.splice = self.splice, None
        if self.done:
            return
        if error is not None:
            self.abort(ErrorKind.RELAY_FAILED, f"response body relay failed: {error}")
            return
        self.response.spliced(pump.moved)
        self.state = RESPONDING
        self.upstream.stream.start_reading()
        self.client.exchange_done(self, self.request_complete)

    def on_upstream_closed(self, exc: OSError | None) -> None:
        upstream, self.upstream = self.upstream, None
        self.cluster.pool.discard(upstream, by_peer=True)
        response = self.response
        if exc is None and response.end_at_eof():     # close-delimited body: EOF ends it
            self.client.stream.write(response.take())
            self.client.exchange_done(self, False)
        elif self._retryable():
            self._retry()
        elif self.responding:
            self.abort(ErrorKind.RESET_MID_RESPONSE,
                       "backend closed mid-response" if exc is None
                       else f"backend connection failed: {exc.strerror or exc}")
        elif exc is None:
            self.attempt_failed(502, ErrorKind.CLOSED_BEFORE_RESPONSE,
                                "backend closed the connection early")
        else:
            self.attempt_failed(502, ErrorKind.RESET_BEFORE_RESPONSE,
                                f"backend connection failed: {exc.strerror or exc}")

    def _drop_attempt(self) -> None:
        """Let go of the host and whatever connection this attempt had."""
        self.host.awaiting.discard(self)
        if self.state is QUEUED:
            self.cluster.pool.unqueue(self.host, self, timed_out=False)
        self.cluster.release(self.host)
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            self.cluster.pool.discard(upstream)

    def _switch_protocols(self, tail: bytes) -> None:
        """101 from the backend: both connections become one byte stream."""
        if self.upgrade is None:
            self.fail(502, ErrorKind.BAD_RESPONSE, "backend switched protocols unasked")
            return
        self.state = RESPONDING
        self.host.awaiting.discard(self)
        self.client.stream.write(self.response.switch_head() + tail)
        self._report()
        self.cluster.release(self.host)    # a stream, no longer a request in flight
        self.state = DONE
        self.response.close()
        join_streams(self.site, self.client, self.upstream, self.cluster.pool)

    # -- endings ---------------------------------------------------------
    def fail(self, status: int, kind: ErrorKind, detail: str, headers: bytes = b"") -> None:
        """The backend side failed: answer with an error if nothing was sent yet."""
        if self.responding:
            self.abort(kind, detail)
            return
        self.status, self.error, self.kind = status, detail, kind
        self.client.stream.write(rules.error_response(status, detail, headers))
        self.client.exchange_done(self, False)

    def out_of_time(self) -> None:
        self.fail(504, ErrorKind.TOTAL_TIMEOUT, "the exchange took longer than timeouts.total")

    def abort(self, kind: ErrorKind, detail: str) -> None:
        """Give up mid-stream: the client sees its connection reset."""
        if not self.error:
            self.error, self.kind = detail, kind
        log.warning("exchange aborted", client=self.client.peer.decode(), reason=detail,
                    backend=self.host.name if self.host else None)
        self.finish(False)
        self.client.abort()

    def cancel(self) -> None:
        """The client went away: drop the backend side."""
        self._release(False)

    def finish(self, reuse: bool) -> None:
        if self.state is not DONE:
            self._report()
            self._release(reuse)

    def _release(self, reuse: bool) -> None:
        """Give back the host's in-flight slot and the connection; the end."""
        if self.state is DONE:
            return
        if self.tried is not None:
            self.cluster.retrying -= 1
        if self.splice is not None:
            self.splice.stop()
            self.splice = None
        if self.response is not None:
            self.response.close()
        upstream = self.upstream
        if reuse and upstream is not None and not upstream.stream.pending:
            self.upstream = None
            self.cluster.pool.release(upstream, self.site.clock.now)
        if self.host is not None:
            self._drop_attempt()
        self.state = DONE

    def _report(self) -> None:
        """The outcome to the cluster (and so to the control process), and the
        access log line."""
        site, response = self.site, self.response
        status = self.status or (response.status if response is not None else 0)
        bytes_out = response.body_bytes if response is not None else 0
        site.stats.requests += 1
        if status >= 500 or self.error:
            site.stats.errors += 1
        ms = self._ms()
        host = self.host.name if self.host else ""
        cluster = self.cluster
        if cluster is not None:                # None: the balancer answered (routed.py)
            cluster.report(self.host, Outcome(cluster.name, host, status, ms, self.bytes_in,
                                              bytes_out, self.kind, self.reused))
        if site.config.log.access:
            route = self.route
            access_line(self.client.peer, self.method, self.target, status, host,
                        self.bytes_in, bytes_out, ms, self.error,
                        route and route.name, cluster.name if cluster is not None else None,
                        self.client.tls_log)

    def _ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 2)
