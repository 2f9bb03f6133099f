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

import time
from typing import TYPE_CHECKING, cast

import httptools
import structlog

from ..io.relay import SplicePump
from ..io.stream import Stream
from ..proxyproto.header import Addresses, ProxyError
from ..upstream.outcome import ErrorKind
from . import codec, request
from .codec import NONE, Reject
from .deadline import HEAD, IDLE, LINGER, NEVER
from .exchange import Exchange
from .identity import ClientIdentity
from .lane_request import LaneRequest
from .launch import launch
from .timer import Timer
from .request import RequestHead
from .request_body import RequestBody
from .request_reader import Body, RequestReader, rejection
from .response import ResponseReader

if TYPE_CHECKING:
    from ..logs.access_lines import AccessLog
    from ..worker_view import WorkerView

log = structlog.get_logger("l7lb.http")

LINGER_SECONDS = 2.0   # to drain a client's unread input before closing
DRAIN_IDLE = 1.0       # stopping: an idle keep-alive connection waits this long for a request


class ClientConnection:
    __slots__ = (
        "worker", "limits", "stream", "reader", "who", "queue", "active", "closing", "closed",
        "upgrading", "feeding", "input_error", "splice", "awaiting_drain", "timer",
        "splice_bodies", "access", "lane", "__weakref__")

    def __init__(self, worker: "WorkerView", stream: Stream, peer: str, port: int = 0) -> None:
        self.worker = worker
        self.limits = worker.config.limits
        self.stream = stream
        stream.own(self)
        # TLS: the socket carries ciphertext, so no splice; X-Forwarded-Proto says so.
        self.splice_bodies = worker.splice_bodies and stream.plain
        self.access: AccessLog | None = worker.access
        self.who = ClientIdentity(peer, stream.tls, worker.config.balancer, self.access, port,
                                  worker.request_ids.name if worker.request_ids else b"")
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
        self.awaiting_drain = False
        self.timer = Timer(self, worker)    # the one deadline
        # The fast lane, unless something takes this connection's requests off it.
        self.lane = LaneRequest(self, worker) \
            if self.who.preamble is None and not self.who.stripped and worker.lane else None
        self.timer.expect(HEAD, worker.config.timeouts.header)
        worker.track(self)

    # -- input -----------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        lane = self.lane
        if lane is not None:
            if lane.conn is not None:
                lane.hand_over()         # more from the client: the parser takes over
            elif self.active is None and self.reader.head is None \
                    and self.reader.body is None and not self.closing and lane.carry(data):
                return
        self.timer.client_in = self.worker.clock.now
        if self.who.preamble is not None:
            data = self._proxy_header(data) or b""
            if not data:
                return
        if self.input_error is not None or self.closing and self.active is None:
            return   # lingering: discard what the client still sends
        if data[:3] == b"PRI" and self._speaks_h2c(data):
            return
        self.feeding = True
        try:
            self.reader.feed(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrading = True
            self.queue[-1].upgrade_tail = data[upgrade.args[0]:]
        except httptools.HttpParserError as exc:
            self._input_failed(exc)
            return
        finally:
            self.feeding = False
        active = self.active          # the request read may splice the rest of its body
        if active is None or not active.splice_request_body():
            self.update_reading()

    def _speaks_h2c(self, data: bytes) -> bool:
        """HTTP/2 with prior knowledge (http2.cleartext): the connection,
        idle between requests, goes to an HTTP/2 connection with this read."""
        if not (data.startswith(codec.H2_PREFACE) and self.worker.config.balancer.http2.cleartext
                and self.stream.tls is None and self.active is None and not self.reader.inside):
            return False
        self.closed = True
        self.worker.speak_h2c(self, self.stream, self.who, data)
        return True

    def _proxy_header(self, data: bytes) -> bytes | None:
        """accept_proxy: what follows the PROXY header, or None while it is
        incomplete (a bad one closes the connection)."""
        try:
            return self.who.after_preamble(data)
        except ProxyError as exc:
            log.info("connection refused", client=self.who.peer.decode(), reason=str(exc))
            self.worker.stats.untrusted += 1
            self.abort()
            return None

    def addresses(self) -> Addresses:
        """Who the client is and what it connected to (a PROXY header's word first)."""
        return self.who.addresses(self.stream.shared_socket())

    def _input_failed(self, exc: httptools.HttpParserError) -> None:
        reject = rejection(exc)
        if reject.status == 500:
            log.error("request handling failed", client=self.who.peer.decode(),
                      exc_info=exc.__context__)
        self.reject_later(reject)

    def on_eof(self) -> None:
        if self._lane_under_way():
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
        self.lane_hands_over()
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
                want = active.body.held_size < self.limits.buffer
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
            self.timer.expect(HEAD, self.worker.config.timeouts.header)

    def head_read(self, head: RequestHead, upgrade: bool) -> Exchange:
        """A request head, read whole: checked, then queued as an Exchange."""
        worker = self.worker
        head.keep_alive = head.keep_alive and not (self.closing or worker.stopping)
        request.admit(head, worker, self, self.who.stripped, upgrade, self.stream.shared_socket)
        exchange = Exchange(self, worker, head.method, head.target, head.version,
                            head.keep_alive, time.monotonic(), RequestBody(head.framing, head.length))
        exchange.head, exchange.upgrade = head, head.upgrade
        self.queue.append(exchange)
        # A request without a body is whole in a moment (request_read, in
        # this same feed): it starts then, with no body to wait for.
        if self.active is None and (head.framing != NONE or exchange.upgrade):
            self.activate(exchange)
        return exchange

    def request_read(self, body: Body, trailers: codec.Headers) -> None:
        """A request read whole (its body too)."""
        exchange = cast(Exchange, body)
        exchange.request_end(trailers)
        if self.active is None and self.queue and self.queue[0] is exchange:
            self.activate(exchange)

    # -- exchanges -------------------------------------------------------
    def activate(self, exchange: Exchange) -> None:
        self.active = exchange
        launch(exchange, self.who, self.timer)

    def is_active(self, exchange: Exchange) -> bool:
        """Is ``exchange`` the one being answered (not a pipelined one behind it)?"""
        return self.active is exchange

    def exchange_done(self, exchange: Exchange, reuse: bool) -> None:
        """The response is handed to the client stream in full."""
        exchange.finish(reuse)
        self.timer.total_at, self.timer.stalled_since = NEVER, None
        if self.splice is not None:      # backend answered before the body was sent
            self.splice.stop()
            self.splice = None
        if not exchange.request_complete:
            self.closing = True
        self.queue.pop(0)
        self.active = None
        if not exchange.client_keep_alive or self.closing:
            self.close_gracefully()
            return
        if self.queue:
            self.activate(self.queue[0])
            self.update_reading()
        elif self.input_error is not None:
            self.reject_now(self.input_error)
        else:
            timeouts = self.worker.config.timeouts
            if not self.reader.inside:
                self.timer.expect(IDLE, timeouts.idle)
            else:
                self.timer.expect(HEAD, timeouts.header)
            self.stream.start_reading()     # nothing holds the client's bytes back now
            if self.worker.stopping:        # it promised keep-alive: one more, then close
                self.shutdown()

    def send_response(self, response: ResponseReader) -> None:
        if response.out:
            self.stream.write(response.take())

    def send_answer(self, status: int, headers: bytes, body: bytes, head_only: bool) -> None:
        self.stream.write(codec.local_response(status, headers, body, head_only))

    def send_error(self, status: int, detail: str, headers: bytes) -> None:
        self.stream.write(codec.error_response(status, detail, headers))

    def backlogged(self) -> bool:
        return self.stream.pending >= self.limits.buffer

    def may_splice_request(self) -> bool:
        """No splice is running and the parser is not inside a feed (bytes it has
        read must reach the backend first)."""
        return not self.feeding and self.splice is None

    def splice_request(self, exchange: Exchange, upstream: Stream, count: int) -> None:
        """Move the rest of a large request body to the backend in the kernel."""
        self.stream.stop_reading()
        pump = self.splice = SplicePump(self.worker.reactor, self.stream.fd, upstream.fd, count,
                                        lambda error: self._request_spliced(exchange, pump, error))
        upstream.when_drained(pump.start)     # kept first: the pump may finish at once

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

    def hold_back(self, upstream: Stream, exchange: Exchange) -> None:
        """The client has limits.buffer of response unread: stop reading the
        backend until it takes it (within timeouts.client_write)."""
        self.stream.when_drained(self.timer.hold_back(upstream, exchange))

    # -- the fast lane's request ---------------------------------------------
    def _lane_under_way(self) -> bool:
        return self.lane is not None and self.lane.conn is not None

    def lane_hands_over(self) -> None:
        """A lane request under way goes on as an Exchange (the general path
        handles what comes next: more input, an error, a deadline)."""
        if self.lane is not None and self.lane.conn is not None:
            self.lane.hand_over()

    def adopt(self, method: bytes, target: bytes, started: float) -> Exchange:
        """A request the lane took (an HTTP/1.1 keep-alive one) becomes the
        active Exchange."""
        exchange = Exchange(self, self.worker, method, target, "1.1", True, started)
        self.queue.append(exchange)
        self.active = exchange
        self.timer.client_in = self.timer.backend_in = self.worker.clock.now
        return exchange

    # -- the one deadline --------------------------------------------------
    def check(self, now: float) -> None:
        """Called by the worker's timer sweep."""
        if now >= self.timer.at:
            self.timer.fire(now)

    def head_begun(self) -> bool:
        return self.reader.inside

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
        self.worker.stats.rejected += 1
        log.info("request rejected", client=self.who.peer.decode(), status=reject.status,
                 reason=reject.detail)
        self.stream.write(codec.error_response(reject.status, reject.detail, reject.headers))
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
        self.timer.expect(LINGER, LINGER_SECONDS)

    def shutdown(self) -> None:
        """The worker is stopping: a connection promised keep-alive waits DRAIN_IDLE
        for one more request (closing at once loses one on its way), answered
        with ``Connection: close``."""
        if self.closing or self.active is not None or self._lane_under_way():
            return                # exchange_done (or the lane) comes back here
        self.lane = None          # the general path, which says Connection: close
        if not self.reader.inside:
            self.timer.expect(LINGER, DRAIN_IDLE)

    def close(self) -> None:
        if self.closed:
            return
        self.lane_hands_over()
        self.closed = True
        for exchange in self.queue:
            exchange.cancel()
        self.queue.clear()
        self.active = None
        if self.splice is not None:
            self.splice.stop()
            self.splice = None
        self.stream.close()
        self.worker.forget(self)

    def abort(self) -> None:
        self.stream.abort()
        self.close()

    def upgraded(self) -> Stream:
        """After a 101 response the connection leaves HTTP: its stream goes
        to a byte relay."""
        self.closed = True
        self.worker.forget(self)
        return self.stream
