"""One HTTP/2 stream of a client connection: one request, which an Exchange
carries to a host like any HTTP/1.1 request. The stream is the exchange's
``ClientSide`` and its own deadline's owner; what it answers goes through
its connection (``Carrier``), which frames it and keeps flow control.

The response body waits in ``out`` until the client's flow-control window
takes it; with ``limits.buffer`` waiting, the exchange stops reading the
backend (``hold_back``) until the window opens again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Protocol

import structlog

from ..http import codec
from ..http.codec import Reject
from ..http.deadline import RESPONSE, NEVER
from ..http.exchange import Exchange
from ..http.identity import ClientIdentity
from ..http.request import TOO_MANY
from ..http.request_id import fresh_line
from ..http.launch import launch
from ..http.request import RequestHead
from ..http.request_body import RequestBody
from ..http.response import ResponseReader
from ..http.timer import Timer
from ..io.stream import Stream
from ..proxyproto.header import Addresses
from ..upstream.outcome import ErrorKind
from . import grpc
from .request import answer_block, request_head, response_block, trailer_block
from .stream_lane import StreamLane

if TYPE_CHECKING:
    from ..io.relay import SplicePump
    from ..logs.access_lines import AccessLog
    from ..worker_view import WorkerView

log = structlog.get_logger("l7lb.http2")


class Carrier(Protocol):
    """What a stream may ask of its HTTP/2 connection (connection.py)."""
    stream: Stream
    who: ClientIdentity

    def send_head(self, sid: int, block: codec.Headers, end: bool) -> None: ...
    def send_encoded_head(self, sid: int, encoded: bytes, end: bool) -> None: ...
    def send_whole(self, stream: "H2Stream", encoded: bytes, body: bytes) -> bool: ...
    def flush_stream(self, stream: "H2Stream") -> None: ...
    def consumed(self, stream: "H2Stream") -> None: ...    # the body bytes read may be granted again
    def reset(self, sid: int) -> None: ...
    def stream_done(self, stream: "H2Stream") -> None: ...
    def addresses(self) -> Addresses: ...
    def allow_request(self) -> bool: ...


class H2Stream:
    __slots__ = ("conn", "sid", "worker", "stream", "who", "access", "timer", "active",
                 "splice", "closing", "splice_bodies", "head_sent", "out", "queued", "ended",
                 "end_block", "sent_end", "trailers", "unacked", "on_drain", "closed", "answered",
                 "lane", "grpc")

    def __init__(self, conn: Carrier, sid: int, worker: "WorkerView") -> None:
        self.conn, self.sid, self.worker = conn, sid, worker
        self.stream = conn.stream            # the connection's (socket tuning only)
        self.who = conn.who
        self.access: AccessLog | None = worker.access
        self.splice: SplicePump | None = None   # an h2 stream never splices
        self.splice_bodies = False
        self.closing = False
        self.timer = Timer(self, worker)
        self.timer.expect(RESPONSE, worker.response_timeout)
        self.active: Exchange | None = None
        self.head_sent = False
        self.out: list[bytes] = []          # response body the window has not taken yet
        self.queued = 0
        self.ended = False                  # the response's end is in ``out``'s wake
        self.end_block: codec.Headers | None = None   # trailers that end it
        self.sent_end = False               # END_STREAM went to the client
        self.trailers: codec.Headers = []   # the client's, if it sent any
        self.unacked = 0                    # request body bytes read but not granted again
        self.on_drain: Callable[[], None] | None = None
        self.closed = False
        self.answered = False               # the exchange is done with it
        self.lane: StreamLane | None = None   # its request on the fast lane
        self.grpc = False                   # a gRPC call: the balancer answers in gRPC

    # -- the request ---------------------------------------------------------
    def begin(self, block: codec.Headers, ended: bool) -> None:
        """Its header block arrived (``ended``: with END_STREAM)."""
        worker = self.worker
        if not ended:           # a gRPC call has a body: it is answered in gRPC from here on
            self.grpc = any(name == b"content-type" and grpc.is_grpc(value)
                            for name, value in block)
        if not self.conn.allow_request():
            self.refuse(429, TOO_MANY)
            return
        if ended and worker.lane and not self.who.stripped:
            lane = self.lane = StreamLane(self, worker)
            if lane.carry(block):
                return
        try:
            head = request_head(block, ended, self.who.stripped, worker.config.limits.body_bytes)
        except Reject as reject:
            self.refuse(reject.status, reject.detail)
            return
        exchange = self.active = Exchange(self, worker, head.method, head.target, "2.0", True,
                                          time.monotonic(),
                                          RequestBody(head.framing, head.length,
                                                      self._keep()))
        exchange.head = head
        if ended:
            exchange.request_end([])
        launch(exchange, self.who, self.timer, self._grpc_deadline(head))

    def _keep(self) -> int:
        """Bytes of a gRPC call's body kept to send it again (retries.grpc_status)."""
        return self.worker.config.limits.buffer if self.grpc else 0

    def _grpc_deadline(self, head: RequestHead) -> float | None:
        """A gRPC call's grpc-timeout, which caps its timeouts.total; the
        backend is told the lesser of the two in its own grpc-timeout."""
        if not self.grpc:
            return None
        seconds = None
        for name, value in head.headers:
            if name == b"grpc-timeout":
                seconds = grpc.timeout(value)
        if seconds is None:
            return None
        total = self.worker.config.timeouts.total
        lines = head.fields.lines       # (name, ": ", value, CRLF) each
        told = grpc.encode_timeout(seconds if total is None else min(seconds, total))
        for at in range(0, len(lines), 4):
            if lines[at] == b"grpc-timeout":
                lines[at + 2] = told
        return seconds

    def refuse(self, status: int, detail: str) -> None:
        """Answered by the balancer before any exchange (400, 405, 413, 429, 431)."""
        self.worker.stats.rejected += 1
        log.info("request rejected", client=self.who.peer.decode(), status=status,
                 reason=detail, stream=self.sid)
        self.answered = True
        self.send_error(status, detail, fresh_line(self.worker.request_ids) if status == 429
                        else b"")

    def body(self, data: bytes, size: int) -> None:
        """DATA for the request (``size``: what it counted against the window)."""
        self.unacked += size
        exchange = self.active
        if exchange is None or exchange.done:
            self.conn.consumed(self)      # answered already: the bytes go nowhere
            return
        self.timer.client_in = self.worker.clock.now
        try:
            exchange.request_body(data)
        except Reject as reject:
            exchange.fail(reject.status, ErrorKind.CLIENT_ABORTED, reject.detail)
            return
        self.update_reading()

    def end(self) -> None:
        """END_STREAM from the client: the request is whole."""
        exchange = self.active
        if exchange is not None and not exchange.done:
            exchange.request_end(self.trailers)

    def cancelled(self) -> None:
        """The client reset the stream: drop the backend side."""
        self.closed = True
        self.lane_hands_over()
        exchange = self.active
        if exchange is not None and not exchange.done:
            exchange.cancel()
        self.active = None

    # -- ClientSide: what the exchange asks ----------------------------------
    def is_active(self, exchange: Exchange) -> bool:
        return self.active is exchange

    def send_response(self, response: ResponseReader) -> None:
        if self.closed:
            return
        if not self.head_sent:
            if not response.started:
                return
            self.head_sent = True
            bare = response.complete and not response.out and not response.trailers
            self.conn.send_head(self.sid, response_block(response.status, response.lines), bare)
            if bare:
                self.conn.flush_stream(self)
                return
        if response.out:
            data = response.take()
            self.out.append(data)
            self.queued += len(data)
        if response.complete:
            self.ended = True
            self.end_block = trailer_block(response.trailers) or None
        self.conn.flush_stream(self)

    def send_answer(self, status: int, headers: bytes, body: bytes, head_only: bool) -> None:
        if self.closed or self.head_sent:
            return
        if self.grpc:
            self._grpc_answer(status, ErrorKind.NONE, body.decode("utf-8", "replace").strip())
            return
        self.head_sent = True
        block = answer_block(status, headers, len(body))
        if head_only or not body:
            self.conn.send_head(self.sid, block, True)
            self.conn.flush_stream(self)
            return
        self.conn.send_head(self.sid, block, False)
        self.out.append(body)
        self.queued += len(body)
        self.ended = True
        self.conn.flush_stream(self)

    def send_error(self, status: int, detail: str, headers: bytes) -> None:
        if self.grpc and not self.closed and not self.head_sent:
            exchange = self.active
            self._grpc_answer(status, exchange.kind if exchange is not None else ErrorKind.NONE,
                              detail)
            return
        lines, body = codec.error_parts(status, detail, headers)
        self.send_answer(status, b"Content-Type: text/plain\r\n" + lines, body, False)

    def _grpc_answer(self, status: int, kind: ErrorKind, message: str) -> None:
        """A trailers-only response: what a gRPC client reads as a status."""
        self.head_sent = True
        self.conn.send_head(self.sid, grpc.trailers_only(status, kind, message), True)
        self.conn.flush_stream(self)

    def backlogged(self) -> bool:
        return self.queued >= self.worker.config.limits.buffer

    def hold_back(self, upstream: Stream, exchange: Exchange) -> None:
        """limits.buffer of response waits for the client's window: stop
        reading the backend until the window takes it."""
        self.on_drain = self.timer.hold_back(upstream, exchange)

    def taken(self, size: int) -> None:
        """``size`` bytes of ``out`` went into frames."""
        self.queued -= size
        if self.on_drain is not None and self.queued < self.worker.config.limits.buffer:
            drain, self.on_drain = self.on_drain, None
            drain()

    def update_reading(self) -> None:
        """Grant the client window again for body bytes sent on, unless the
        backend is not taking them (then when it has)."""
        exchange = self.active
        upstream = exchange.upstream if exchange is not None else None
        if upstream is None:
            if exchange is not None and exchange.body.held_size >= self.worker.config.limits.buffer:
                return          # no connection yet: held until there is one
        elif upstream.stream.queued and upstream.stream.pending >= self.worker.config.limits.buffer:
            upstream.stream.when_drained(self.update_reading)
            return
        if self.unacked:
            self.conn.consumed(self)

    def may_splice_request(self) -> bool:
        return False

    def splice_request(self, exchange: Exchange, upstream: Stream, count: int) -> None:
        raise AssertionError("an HTTP/2 stream's body is never spliced")

    def addresses(self) -> Addresses:
        return self.conn.addresses()

    def exchange_done(self, exchange: Exchange, reuse: bool) -> None:
        exchange.finish(reuse)
        self.timer.total_at, self.timer.stalled_since = NEVER, None
        self.active = None
        self.answered = True
        self.conn.flush_stream(self)

    def abort(self) -> None:
        """The exchange gave up mid-response: the client sees the stream reset."""
        self.active = None
        self.answered = True
        if not self.closed:
            self.closed = True
            self.conn.reset(self.sid)
        self.conn.stream_done(self)

    def upgraded(self) -> Stream:
        raise AssertionError("HTTP/2 has no Upgrade")

    # -- Timed: what its deadline acts on --------------------------------------
    def head_begun(self) -> bool:
        return False

    def lane_hands_over(self) -> None:
        if self.lane is not None:
            self.lane.hand_over()

    # -- LaneOwner: what its lane request asks ---------------------------------
    def adopt(self, method: bytes, target: bytes, started: float) -> Exchange:
        """The lane hands its request over (or never sent it): an Exchange
        carries it on."""
        exchange = self.active = Exchange(self, self.worker, method, target, "2.0", True, started)
        return exchange

    def lane_answer(self, encoded: bytes, body: bytes) -> None:
        """The lane's whole answer (its head encoded already)."""
        if self.closed:
            return
        self.answered = self.head_sent = self.ended = True
        if self.conn.send_whole(self, encoded, body):
            return
        self.out.append(body)
        self.queued += len(body)
        self.conn.flush_stream(self)

    def reject_now(self, reject: Reject) -> None:
        self.send_error(reject.status, reject.detail, b"")

    def close(self) -> None:
        """Its deadline passed with nothing to answer: the stream is reset."""
        self.abort()

    def check(self, now: float) -> None:
        if not self.answered and now >= self.timer.at:
            self.timer.fire(now)

