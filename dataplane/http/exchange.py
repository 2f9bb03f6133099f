"""One request and its response on the general path, carried between a client
and a host; made only for what the fast lane (lane.py) does not carry.

An Exchange owns its request's framing toward the backend and its ending.
Its Attempt (attempt.py) finds it a host and a connection (pooled, new, or
a turn in the host's queue), and another host when a try fails. The
Exchange writes the request head and streams the body (re-chunked, or
spliced in the kernel when large), then reads the response with the
connection's reader (response.py) and streams it to the client. It reaches
its client only through ``ClientSide`` and the upstream only through its
``Cluster``. Its progress is one Stage; the request side's only independent
fact is whether the whole request has been read from the client
(``request_complete``).
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING, Protocol, cast

import httptools
import structlog

from ..io.relay import SplicePump
from ..io.stream import Stream
from ..proxyproto.header import Addresses, encode
from ..upstream.cluster import Cluster
from ..upstream.host import Host
from ..upstream.outcome import ErrorKind
from ..upstream.connection import UpstreamConnection
from . import codec, retry
from ..logs.access_lines import AccessLog
from .attempt import Attempt
from .codec import LENGTH, NONE
from .identity import ClientIdentity
from .deadline import RESPONSE, Deadline
from .request import SPLICE_MIN, RequestHead
from .request_body import RequestBody
from .request_id import id_line
from .request_log import log_request
from .response import ResponseReader
from .upgrade import join_streams

if TYPE_CHECKING:
    from ..routing.route import Route
    from ..tracing.recorder import Trace
    from ..worker_view import WorkerView

log = structlog.get_logger("l7lb.http")


class Stage(enum.Enum):
    PENDING = "pending"          # no connection: behind an earlier request, queued or connecting
    SENT = "sent"                # request head written; no response head yet
    RESPONDING = "responding"    # response head passed to the client; body streaming
    SPLICING = "splicing"        # the rest of the response body moves in the kernel
    DONE = "done"                # finished, failed, cancelled or upgraded


# Module-level names: a global is read ten times faster than an enum member.
PENDING, SENT, RESPONDING, SPLICING, DONE = Stage
NO_ERROR = ErrorKind.NONE


class ClientSide(Protocol):
    """What an exchange may ask of the client connection it answers."""
    stream: Stream
    who: ClientIdentity         # the client's address, its lines and access-line prefix
    splice_bodies: bool         # large bodies of known length may move by splice
    closing: bool               # no further request: the connection closes after this one
    access: AccessLog | None

    @property
    def timer(self) -> Deadline: ...   # the connection's one deadline

    def is_active(self, exchange: "Exchange") -> bool: ...
    def send_response(self, response: ResponseReader) -> None: ...   # what it has for the client
    def send_answer(self, status: int, headers: bytes, body: bytes, head_only: bool) -> None: ...
    def send_error(self, status: int, detail: str, headers: bytes) -> None: ...
    def backlogged(self) -> bool: ...    # limits.buffer of response waits for the client
    def hold_back(self, upstream: Stream, exchange: "Exchange") -> None: ...
    def update_reading(self) -> None: ...
    def may_splice_request(self) -> bool: ...
    def splice_request(self, exchange: "Exchange", upstream: Stream, count: int) -> None: ...
    def addresses(self) -> Addresses: ...
    def exchange_done(self, exchange: "Exchange", reuse: bool) -> None: ...
    def abort(self) -> None: ...
    def upgraded(self) -> Stream: ...


class Exchange:
    __slots__ = (
        "client", "worker", "state", "method", "target", "version", "keep_alive",
        "upgrade", "upgrade_tail", "forward", "body", "request_complete", "attempt",
        "upstream", "response", "splice", "reused", "sends", "started", "status", "error", "kind",
        "route", "local", "per_try", "head", "request_id", "sent_at", "trace")

    def __init__(self, client: ClientSide, worker: "WorkerView", method: bytes, target: bytes,
                 version: str, keep_alive: bool, started: float,
                 body: RequestBody | None = None) -> None:
        self.client = client
        self.worker = worker
        self.state = PENDING
        self.method = method
        self.target = target
        self.version = version
        self.keep_alive = keep_alive
        self.upgrade: bytes | None = None
        self.upgrade_tail = b""
        self.forward = b""                # the request head as sent upstream
        self.body = body or RequestBody()
        self.request_complete = False
        self.attempt: Attempt | None = None     # once routed to a group
        self.upstream: UpstreamConnection | None = None
        self.response: ResponseReader | None = None
        self.splice: SplicePump | None = None   # response body moving in the kernel
        self.reused = False               # on a pooled connection (retry candidate)
        self.sends = 0                    # times the request went upstream, on any host
        self.started = started
        self.status = 0                   # set when the balancer answers itself
        self.error = ""
        self.kind = NO_ERROR
        self.route: Route | None = None     # the route it took (None: the default group)
        self.local = False                 # answered by the balancer (respond, redirect)
        self.per_try = worker.response_timeout   # seconds for the response head, per try
        self.head: RequestHead | None = None   # as parsed; None for one the lane handed over
        self.request_id = b""              # set as it is routed (request_id.enabled)
        self.sent_at = 0.0                 # monotonic: last sent upstream
        self.trace: Trace | None = None    # when traced (tracing.enabled, sampled)

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
        return self.state is RESPONDING or self.state is SPLICING

    @property
    def replayable(self) -> bool:
        """May go to another host after a failed try (retry.replayable)."""
        return not self.responding and retry.replayable(
            self.method, self.written, self.body.framing != NONE, self.upgrade is not None)

    # -- where it goes -----------------------------------------------------
    def routed(self, cluster: Cluster, route: "Route | None", key: bytes | None,
               forward: bytes) -> None:
        """Its group, route, hash key and upstream head, decided by the client."""
        self.route, self.forward = route, forward
        self.attempt = Attempt(self, cluster, self.worker, route, key)
        if route is not None:
            self.per_try = route.per_try_timeout or route.request_timeout or self.per_try

    def start(self, host: Host | None) -> None:
        """On to ``host`` (chosen already), or to one its cluster chooses now."""
        self._attempt().start(host)

    def _attempt(self) -> Attempt:
        assert self.attempt is not None, "an attempt is made once routed"
        return self.attempt

    def _cluster(self) -> Cluster:
        return self._attempt().cluster

    def waiting(self, kind: int, seconds: float) -> None:
        """No connection yet (queued, or one opening): ``kind`` within ``seconds``."""
        self.state = PENDING
        self.client.timer.expect(kind, seconds)

    def queue_timed_out(self) -> None:
        self._attempt().queue_timed_out()

    def attach(self, conn: UpstreamConnection, reused: bool) -> None:
        """Send the request on ``conn``."""
        self.state = SENT
        self.reused = reused
        self.sends += 1
        self.sent_at = time.monotonic()
        self.upstream = conn
        conn.user = self
        conn.requests += 1
        cluster, client = self._cluster(), self.client
        stream = conn.stream
        if cluster.send_proxy and not reused:
            stream.write(encode(cluster.send_proxy, client.addresses()))
        if conn.host.client_side or cluster.transport.clients_tuned:
            cluster.transport.serving(client.stream.shared_socket(), conn.host)
        self.response = self._reader(conn)
        stream.write(self.body.after(self.forward))
        if self.upgrade_tail:
            stream.write(self.upgrade_tail)
        if self.request_complete:
            client.timer.expect(RESPONSE, self.per_try)
        else:
            client.timer.watch_streams()
            if not self.splice_request_body():
                client.update_reading()

    def _reader(self, conn: UpstreamConnection) -> ResponseReader:
        """The connection's response reader, ready for this request's answer.
        A refused upgrade may have carried the new protocol's first bytes:
        then the connection is not reused."""
        reader = cast("ResponseReader | None", conn.reader)
        if reader is None:
            reader = ResponseReader()
            conn.reader = reader
        route, ids = self.route, self.worker.request_ids
        reader.begin(self.method, self.version, self.keep_alive, self.upgrade,
                     bool(self.upgrade_tail), route.response_edits if route is not None else None,
                     ids.pieces(self.request_id) if ids is not None and ids.echo else ())
        return reader

    def sent(self, conn: UpstreamConnection, body: int) -> None:
        """The fast lane sent it whole on ``conn`` (with ``body`` bytes of
        body) and hands it over here."""
        self.state = SENT
        self.reused = True
        self.sends = 1
        self.sent_at = self.started       # the lane sent it as it read it
        self.upstream = conn
        conn.user = self
        self.request_complete = True
        self.body = RequestBody(LENGTH if body else NONE)
        self.body.bytes_in = body
        self.response = self._reader(conn)
        self._attempt().under_way(conn.host)

    # -- the request body ----------------------------------------------------
    def request_body(self, body: bytes) -> None:
        self._send(self.body.framed(body, self.worker.config.limits.body_bytes))

    def request_end(self, trailers: codec.Headers) -> None:
        """The whole request has been read from the client."""
        self.request_complete = True
        last = self.body.last(trailers)
        if last:
            self._send(last)
        if self.local:                  # answered already; now the request is whole
            self.client.exchange_done(self, False)
        elif self.state is SENT and self.client.is_active(self):
            if self.response is not None and self.response.complete:
                self.on_upstream_data(b"")      # a refusal held for this: on with it now
            else:
                self.client.timer.expect(RESPONSE, self.per_try)

    def _send(self, data: bytes) -> None:
        if self.upstream is not None and self.client.is_active(self):
            self.upstream.stream.write(data)
        else:
            self.body.hold(data)

    def splice_request_body(self) -> bool:
        """Start splicing the rest of a large Content-Length body; True if started.
        Never while the parser is still handing over bytes it has read: those
        come first, and the count to splice is known only after them."""
        upstream, client = self.upstream, self.client
        if (self.request_complete or upstream is None or not self.body.spliceable()
                or not client.splice_bodies or not upstream.stream.plain
                or not client.may_splice_request()):
            return False
        client.splice_request(self, upstream.stream, self.body.remaining)
        return True

    def request_spliced(self, moved: int) -> None:
        self.body.bytes_in += moved
        self.request_end([])

    # -- the response --------------------------------------------------------
    def on_upstream_data(self, data: bytes) -> None:
        client, response = self.client, self.response
        assert response is not None, "a reader is ready once sent"
        client.timer.backend_active()
        response.closing = client.closing or self.worker.stopping
        try:
            response.feed(data)
        except httptools.HttpParserUpgrade as switch:
            self._switch_protocols(data[switch.args[0]:])
            return
        except httptools.HttpParserError as exc:
            self.fail(502, ErrorKind.BAD_RESPONSE, f"invalid response from backend: {exc}")
            return
        if response.started and self.state is SENT:
            if (response.complete and self.body.kept is not None
                    and self._attempt().refusal(response.headers)):
                if not self.request_complete:
                    return          # held until the request is whole (request_end)
                if self._attempt().refused():
                    return          # on to another host, the whole request held again
            self.state = RESPONDING
            self._attempt().answered()
            if not response.complete:        # else the next deadline is the idle one
                client.timer.watch_streams()
        client.send_response(response)
        upstream = self.upstream
        assert upstream is not None, "data comes on an attached connection"
        if response.complete:
            client.exchange_done(self, self.request_complete and response.upstream_keep_alive)
        elif (response.may_splice(SPLICE_MIN) and client.splice_bodies
              and upstream.stream.plain):
            self._splice_response(upstream, response)
        elif client.backlogged():
            client.hold_back(upstream.stream, self)

    def _splice_response(self, upstream: UpstreamConnection, response: ResponseReader) -> None:
        self.state = SPLICING
        upstream.stream.stop_reading()
        self.splice = SplicePump(self.worker.reactor, upstream.stream.fd, self.client.stream.fd,
                                 response.remaining, self._response_spliced)
        self.client.stream.when_drained(self.splice.start)   # kept first: it may finish at once

    def _response_spliced(self, error: OSError | None) -> None:
        pump, self.splice = self.splice, None
        if self.done or pump is None:
            return
        if error is not None:
            self.abort(ErrorKind.RELAY_FAILED, f"response body relay failed: {error}")
            return
        assert self.response is not None and self.upstream is not None
        self.response.spliced(pump.moved)
        self.state = RESPONDING
        self.upstream.stream.start_reading()
        self.client.exchange_done(self, self.request_complete)

    def on_upstream_closed(self, exc: OSError | None) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            self._cluster().discard(upstream, by_peer=True)
        response = self.response
        if exc is None and response is not None and response.end_at_eof():
            self.client.send_response(response)     # close-delimited: EOF ends it
            self.client.exchange_done(self, False)
        elif retry.reconnect_allowed(self.reused, self.sends, self.written,
                                     self.body.framing != NONE, self.upgrade is not None):
            if not self._attempt().reconnect():
                self.fail(503, ErrorKind.POOL_FULL,
                          f"backend {upstream.host.name if upstream else ''} at pool.max_active")
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

    def _switch_protocols(self, tail: bytes) -> None:
        """101 from the backend: both connections become one byte stream."""
        if self.upgrade is None:
            self.fail(502, ErrorKind.BAD_RESPONSE, "backend switched protocols unasked")
            return
        assert self.response is not None and self.upstream is not None
        self.state = RESPONDING
        self._attempt().answered()
        self.client.stream.write(self.response.switch_head() + tail)
        self._report()
        cluster = self._cluster()
        cluster.release(self.upstream.host)    # a stream, no longer a request in flight
        self.state = DONE
        join_streams(self.worker, self.client, self.upstream, cluster)

    # -- retries ---------------------------------------------------------------
    def attempt_failed(self, status: int, kind: ErrorKind, detail: str) -> None:
        """This try failed before any response byte (see Attempt.failed)."""
        self._attempt().failed(status, kind, detail)

    def host_down(self) -> None:
        """Its host was declared down before it answered (see Attempt.host_down)."""
        self._attempt().host_down()

    def try_failed(self, host: Host, kind: ErrorKind) -> UpstreamConnection | None:
        """A failed try, counted for ``host``; the exchange goes on elsewhere
        without its response reader, and gives its connection up."""
        self._cluster().finished(host, 0, self._ms(), 0, 0, kind, self.reused)
        self.body.rewind()
        self.response = None
        upstream, self.upstream = self.upstream, None
        return upstream

    # -- endings ---------------------------------------------------------
    def answer(self, status: int, headers: bytes, body: bytes) -> None:
        """The balancer's own answer. The connection stays open for the next
        request, unless the client asked to close, once this one has been read
        whole (at once when it has no body; one with a body is not waited for:
        the connection closes)."""
        self.status, self.local = status, True
        headers += id_line(self.worker.request_ids, self.request_id)
        if not self.keep_alive:      # the client asked to close (or HTTP/1.0)
            headers += b"Connection: close\r\n"
        self.client.send_answer(status, headers, body, self.method == b"HEAD")
        if self.request_complete or self.body.framing != NONE:
            self.client.exchange_done(self, False)

    def fail(self, status: int, kind: ErrorKind, detail: str, headers: bytes = b"") -> None:
        """The backend side failed: answer with an error if nothing was sent yet."""
        if self.responding:
            self.abort(kind, detail)
            return
        self.status, self.error, self.kind = status, detail, kind
        self.client.send_error(status, detail,
                               headers + id_line(self.worker.request_ids, self.request_id))
        self.client.exchange_done(self, False)

    def out_of_time(self) -> None:
        self.fail(504, ErrorKind.TOTAL_TIMEOUT, "the exchange took longer than timeouts.total")

    def abort(self, kind: ErrorKind, detail: str) -> None:
        """Give up mid-stream: the client sees its connection reset."""
        if not self.error:
            self.error, self.kind = detail, kind
        host = self._host_name()
        log.warning("exchange aborted", client=self.client.who.peer.decode(), reason=detail,
                    backend=host or None)
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
        if self.splice is not None:
            self.splice.stop()
            self.splice = None
        upstream, attempt = self.upstream, self.attempt
        if reuse and upstream is not None and attempt is not None \
                and not upstream.stream.pending:
            attempt.cluster.give_back(upstream, self.worker.clock.now)
            upstream = None
        if attempt is not None:
            self.upstream = None
            attempt.end(upstream)
        self.state = DONE

    def _host_name(self) -> str:
        attempt = self.attempt
        return attempt.host.name if attempt is not None and attempt.host is not None else ""

    def _report(self) -> None:
        """How it ended, to its cluster (the host's tally, passive health, the
        breaker), the worker's counts and the access log."""
        response, attempt = self.response, self.attempt
        cluster, host = (attempt.cluster, attempt.host) if attempt is not None else (None, None)
        status = self.status or (response.status if response is not None else 0)
        bytes_in, bytes_out = self.body.bytes_in, response.body_bytes if response is not None else 0
        ms = self._ms()
        if cluster is not None and host is not None:
            cluster.finished(host, status, ms, bytes_in, bytes_out, self.kind, self.reused)
        log_request(self.worker.stats, self.client, self.method, self.target, status,
                    host.name if host is not None else "", bytes_in, bytes_out, ms, self.error,
                    self.route, cluster.name if cluster is not None else "", self, self.trace)

    def _ms(self) -> float:
        return (time.monotonic() - self.started) * 1000
