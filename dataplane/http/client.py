"""The client side of HTTP proxying: one ClientConnection per accepted socket.

It parses requests with httptools, queues pipelined ones (answered in order,
one at a time), enforces head limits and timeouts, and hands each request to
an Exchange (exchange.py) that carries it to a host and the response back.

Memory stays bounded: reading from the client stops while a pipelined request
waits, while the upstream write buffer is over ``limits.buffer``, or while a
body is spliced in the kernel.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import httptools
import structlog

from ..io.relay import SplicePump
from ..proxyproto.header import Addresses
from ..io.stream import Stream
from ..upstream.outcome import ErrorKind
from . import rules
from .deadline import HEAD, IDLE, LINGER, NEVER, Deadlines
from .peer import Peer
from .exchange import Exchange
from .rules import NONE, Reject

if TYPE_CHECKING:
    from ..io.stream import Stream as UpstreamStream
    from ..site import Site

log = structlog.get_logger("l7lb.http")

LINGER_SECONDS = 2.0   # to drain a client's unread input before closing


class ClientConnection(Deadlines, Peer):
    __slots__ = ("site", "limits", "proxied", "preamble", "stream", "parser", "peer", "queue",
                 "parsing", "in_trailers", "trailers", "active", "head_bytes", "closing",
                 "closed", "upgrading", "feeding", "input_error", "splice", "spliced_seen",
                 "awaiting_drain", "client_in", "backend_in", "stalled_since", "total_at",
                 "deadline", "deadline_kind", "splice_bodies", "forwarded", "stripped",
                 "tls_log", "__weakref__")

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
        self.forwarded, self.stripped = self.forwarding(site.config.balancer.tls)
        self.tls_log = self.tls_fields()
        self.parser = httptools.HttpRequestParser(self)
        self.peer = peer.encode()
        # Head-complete requests, [0] the active one: a list (56 bytes empty, a
        # deque is 760) since idle connections are what memory is spent on.
        self.queue: list[Exchange] = []
        self.parsing: Exchange | None = None    # the request being parsed
        self.in_trailers = False                # its head is done: fields are trailers
        self.trailers: rules.Headers = []
        self.active: Exchange | None = None
        self.head_bytes = 0
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
        self.total_at = NEVER       # timeouts.total of the active exchange
        self.deadline = 0.0
        self.deadline_kind = HEAD
        self.arm(HEAD, site.config.timeouts.header)
        site.track(self)

    # -- what its exchanges may ask --------------------------------------
    def is_active(self, exchange: Exchange) -> bool:
        """Is ``exchange`` the one being answered (not a pipelined one behind it)?"""
        return self.active is exchange

    def is_closing(self) -> bool:
        return self.closing

    def may_splice_request(self) -> bool:
        """No splice is running and the parser is not inside a feed (bytes it has
        read must reach the backend first)."""
        return not self.feeding and self.splice is None

    def touch(self) -> None:
        """Bytes came from the backend for this connection: it is not idle."""
        self.backend_in = self.site.clock.now

    def hold_back(self, upstream: "UpstreamStream", exchange: Exchange) -> None:
        """The client has limits.buffer of response unread: stop reading the
        backend until it takes it (within timeouts.client_write)."""
        upstream.stop_reading()
        self.stalled_since = self.site.clock.now
        self.arm_stream()

        def drained() -> None:
            self.stalled_since = None
            if not exchange.done:
                upstream.start_reading()
        self.stream.when_drained(drained)

    def _splice_stalled(self) -> bool:
        """A response body being spliced waits for the client to take some."""
        pump = self.active.splice if self.active is not None else None
        return pump is not None and pump.blocked_on_output

    def _spliced(self) -> int:
        """Bytes moved by splice so far, which count as activity."""
        moved = self.splice.moved if self.splice is not None else 0
        if self.active is not None and self.active.splice is not None:
            moved += self.active.splice.moved
        return moved

    # -- input -----------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        self.client_in = self.site.clock.now
        if self.preamble is not None:
            data = self._proxy_header(data)
            if not data:
                return
        if self.input_error is not None or self.closing and self.active is None:
            return   # lingering: discard what the client still sends
        self.feeding = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrading = True
            self.queue[-1].upgrade_tail = data[upgrade.args[0]:]
        except httptools.HttpParserError as exc:
            self._input_failed(exc)
            return
        finally:
            self.feeding = False
        self._after_input()

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
        active = self.active
        if active is not None and not active.request_complete:
            active.abort(ErrorKind.CLIENT_ABORTED, "client closed before sending the whole request")
        elif active is None:
            self.close()
        else:
            self.closing = True   # let the response finish, then close

    def on_error(self, exc: OSError) -> None:
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

    # -- httptools callbacks --------------------------------------------
    def on_message_begin(self) -> None:
        self.parsing = Exchange(self)
        self.in_trailers = False
        self.trailers = []
        self.head_bytes = 0
        if self.active is None:
            self.arm(HEAD, self.site.config.timeouts.header)

    def on_url(self, url: bytes) -> None:
        self.parsing.target += url
        self.head_bytes += len(url)
        if self.head_bytes > self.limits.header_bytes:
            raise Reject(431 if len(self.parsing.target) < self.head_bytes else 414,
                         "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self.parsing
        if self.in_trailers:
            self.trailers.append((name, value))
            return
        self.head_bytes += len(name) + len(value) + 4
        exchange.headers.append((name, value))
        if self.head_bytes > self.limits.header_bytes:
            raise Reject(431, f"request head larger than {self.limits.header_bytes} bytes")
        if len(exchange.headers) > self.limits.headers:
            raise Reject(431, f"more than {self.limits.headers} header fields")

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        parser = self.parser
        self.in_trailers = True
        exchange.method = parser.get_method()
        exchange.version = parser.get_http_version()
        exchange.keep_alive = parser.should_keep_alive() and not self.closing
        if exchange.method == b"CONNECT":
            raise Reject(405, "CONNECT is not supported by a reverse proxy")
        exchange.inspect_request_headers(upgrade=parser.should_upgrade())
        self.queue.append(exchange)
        # A request without a body is whole in a moment (on_message_complete,
        # in this same feed): it starts then, with no body to wait for.
        if self.active is None and (exchange.req_framing != NONE or exchange.upgrade):
            self.activate(exchange)

    def on_body(self, body: bytes) -> None:
        self.parsing.request_body(body)

    def on_message_complete(self) -> None:
        exchange, self.parsing = self.parsing, None
        exchange.request_end(self.trailers)
        if self.active is None and self.queue and self.queue[0] is exchange:
            self.activate(exchange)

    # -- exchanges -------------------------------------------------------
    def activate(self, exchange: Exchange) -> None:
        self.active = exchange
        total = self.site.config.timeouts.total
        if total is not None:
            self.total_at = self.site.clock.now + total
        exchange.start()

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
            if self.parsing is None:
                self.arm(IDLE, timeouts.idle)
            else:
                self.arm(HEAD, timeouts.header)
            self.stream.start_reading()     # nothing holds the client's bytes back now

    def start_request_splice(self, exchange: Exchange, upstream: "UpstreamStream",
                             count: int) -> None:
        """Move the rest of a large request body to the backend in the kernel."""
        self.stream.stop_reading()
        self.splice = SplicePump(self.site.reactor, self.stream.fd, upstream.fd, count,
                                 lambda error: self._request_spliced(exchange, error))
        upstream.when_drained(self.splice.start)

    def _request_spliced(self, exchange: Exchange, error: OSError | None) -> None:
        exchange.bytes_in += self.splice.moved
        self.splice = None
        if error is not None:
            exchange.abort(ErrorKind.RELAY_FAILED, f"request body relay failed: {error}")
            return
        # The parser still expects body bytes it never saw: start a fresh one.
        self.parser = httptools.HttpRequestParser(self)
        self.parsing = None
        exchange.request_end([])
        self.update_reading()

    # -- errors and closing ---------------------------------------------
    def reject_later(self, reject: Reject) -> None:
        """Answer a bad request after the requests before it are done."""
        if self.closing and self.active is None:
            return      # answered and half-closed in this same read: the rest is discarded
        self.input_error = reject
        parsing, self.parsing = self.parsing, None
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
        self.stream.write(rules.error_response(reject.status, reject.detail))
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
        self.arm(LINGER, LINGER_SECONDS)

    def shutdown(self) -> None:
        """Worker is stopping: finish the current request, take no more."""
        self.closing = True
        if self.active is None:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
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
