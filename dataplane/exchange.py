"""One request and its response, carried between a client and a backend.

An Exchange picks a backend, takes a pooled connection or opens one, writes
the rewritten request head and streams the body, then parses the response
(it is the response parser's callback object) and streams it to the client,
re-framed for the client. Large bodies of known length move by splice(2).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httptools
import structlog

from . import http1, logs
from .http1 import CHUNKED, CLOSE, LENGTH, NONE, Reject
from .relay import SplicePump, make_relay

if TYPE_CHECKING:
    from .backends import Backend
    from .http_proxy import ClientConnection
    from .pool import Connect, UpstreamConnection

log = structlog.get_logger("l7lb.http")

SPLICE_MIN = 256 * 1024   # bodies with at least this much left are spliced

# What a client connection's single deadline currently guards.
IDLE, HEAD, CONNECT, RESPONSE, STREAM, LINGER, QUEUE = range(7)


class Exchange:
    __slots__ = (
        "client", "worker", "target", "headers", "trailers", "head_done", "method",
        "version", "keep_alive", "upgrade", "upgrade_tail", "req_framing",
        "req_remaining", "request_complete", "pending", "pending_size", "backend",
        "upstream", "connecting", "rparser", "status", "reason", "resp_headers", "fields",
        "resp_trailers", "resp_framing", "client_framing", "resp_remaining",
        "resp_started", "resp_complete", "interim", "out", "client_keep_alive",
        "started", "bytes_in", "bytes_out", "error", "done", "splice", "upstream_keep_alive",
        "inflight", "queued", "reused", "retried", "peer_closed", "timed_out",
    )

    def __init__(self, client: "ClientConnection") -> None:
        self.client = client
        self.worker = client.worker
        self.target = b""
        self.headers: http1.Headers = []
        self.trailers: http1.Headers = []
        self.fields: http1.Fields | None = None
        self.head_done = False
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
        self.backend: Backend | None = None
        self.upstream: UpstreamConnection | None = None
        self.connecting: Connect | None = None
        self.rparser = None
        self.status = 0
        self.reason = b""
        self.resp_headers: http1.Headers = []
        self.resp_trailers: http1.Headers = []
        self.resp_framing = NONE
        self.client_framing = NONE
        self.resp_remaining = 0
        self.resp_started = False     # response head written to the client
        self.resp_complete = False
        self.interim = False
        self.out: list[bytes] = []     # response bytes for the client, flushed per read
        self.client_keep_alive = False
        self.upstream_keep_alive = False   # read at the head: httptools forgets it after
        self.inflight = False              # counted in the balancer's in-flight load
        self.queued = False                # waiting in the backend's pool queue
        self.reused = False                # on a pooled connection (retry candidate)
        self.retried = False
        self.peer_closed = False
        self.timed_out = False             # gave up waiting in the queue
        self.splice: SplicePump | None = None   # response body moving in the kernel
        self.started = time.monotonic()
        self.bytes_in = 0
        self.bytes_out = 0
        self.error = ""
        self.done = False

    # -- request ---------------------------------------------------------
    def inspect_request_headers(self, upgrade: bool) -> None:
        fields = self.fields = http1.scan(self.headers)
        if self.version == "1.1" and not fields.host:
            raise Reject(400, "HTTP/1.1 request without Host header")
        if upgrade:
            self.upgrade = fields.upgrade
        self.req_framing, self.req_remaining = fields.framing, fields.length

    def request_body(self, body: bytes) -> None:
        self.bytes_in += len(body)
        if self.req_framing == CHUNKED:
            self._send(http1.chunk(body))
        else:
            self.req_remaining -= len(body)
            self._send(body)

    def request_end(self) -> None:
        self.request_complete = True
        if self.req_framing == CHUNKED:
            self._send(http1.last_chunk(self.trailers))
        client = self.client
        if client.active is self and self.upstream is not None and not self.resp_started:
            client.arm(RESPONSE, self.worker.config.timeouts.request)

    def _send(self, data: bytes) -> None:
        if self.upstream is not None and self.client.active is self:
            self.upstream.stream.write(data)
        else:
            self.pending.append(data)
            self.pending_size += len(data)

    def splice_request_body(self) -> bool:
        """Start splicing the rest of a large Content-Length body; True if started.
        Never while the parser is still handing over bytes it has read: those
        come first, and the count to splice is known only after them."""
        if (self.req_framing != LENGTH or self.request_complete or self.upstream is None
                or self.client.feeding
                or self.req_remaining < SPLICE_MIN or not self.worker.splice_bodies
                or self.client.splice is not None):
            return False
        self.client.start_request_splice(self, self.req_remaining)
        return True

    # -- choosing a backend ----------------------------------------------
    def start(self) -> None:
        worker = self.worker
        balancer = worker.balancer
        key = worker.key_of(self.client.peer, self.target, self.headers) \
            if balancer.hashed else None
        backend = balancer.pick(key)
        if backend is None:
            self.fail(503, "no backend available")
            return
        self.backend = backend
        balancer.acquire(backend)
        self.inflight = True
        backend.requests += 1
        pool = worker.pool
        conn = pool.acquire(backend, worker.clock.now)
        if conn is not None:
            self.attach(conn, reused=True)
        elif pool.can_open(backend):
            self._open()
        elif pool.enqueue(backend, self):
            self.queued = True
            self.client.arm(QUEUE, worker.config.pool.queue_timeout)
        else:
            self.fail(503, f"backend {backend.name} busy: pool.max_active and max_queue reached")

    def _open(self) -> None:
        self.client.arm(CONNECT, self.worker.connect_timeout)
        self.connecting = self.worker.pool.connect(self.backend, self._connected)

    def dequeued(self, conn: "UpstreamConnection | None") -> None:
        """Our turn in the backend's queue: a connection, or room to open one."""
        pool = self.worker.pool
        if not self.queued:          # gone meanwhile: pass the turn on
            if conn is not None:
                pool.release(conn, self.worker.clock.now)
            else:
                pool._freed(self.backend)
            return
        self.queued = False
        if conn is not None:
            pool.backend_reused(conn)
            self.attach(conn, reused=True)
        else:
            self._open()

    def _connected(self, conn: "UpstreamConnection | None", exc: OSError | None) -> None:
        self.connecting = None
        if conn is None:
            self.fail(502, f"cannot connect to backend: {exc.strerror or exc}")
        elif self.done:
            self.worker.pool.discard(conn)
        else:
            self.attach(conn, reused=False)

    def attach(self, conn: "UpstreamConnection", reused: bool) -> None:
        self.reused = reused
        self.upstream = conn
        conn.user = self
        conn.requests += 1
        transport = self.worker.transport
        if conn.backend.client_side or transport.clients:
            transport.serving(self.client.stream.sock, conn.backend)
        self.rparser = httptools.HttpResponseParser(self)
        head = http1.request_head(self.method, self.target, self.fields, self.client.peer,
                                  self.upgrade is not None)
        if self.pending:
            head = b"".join([head, *self.pending])
            self.pending.clear()
            self.pending_size = 0
        conn.stream.write(head)
        if self.upgrade_tail:
            conn.stream.write(self.upgrade_tail)
        if self.request_complete:
            self.client.arm(RESPONSE, self.worker.config.timeouts.request)
        else:
            self.client.arm(STREAM, self.worker.config.timeouts.idle)
            if not self.splice_request_body():
                self.client.update_reading()

    # -- response (httptools callbacks) ----------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_message_begin(self) -> None:
        if self.resp_complete:
            # Bytes after the whole response: never forwarded, and the connection
            # is out of step with its requests, so it is not reused.
            self.upstream_keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.resp_complete:
            return
        if self.resp_started:
            self.resp_trailers.append((name, value))
        else:
            self.resp_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.resp_complete:
            return
        status = self.rparser.get_status_code()
        if status < 200 and status != 101:
            if self.version == "1.1":
                self.out.append(http1.interim_head(status, self.reason, self.resp_headers))
            self.resp_headers = []
            self.reason = b""
            self.interim = True
            return
        self.status = status
        # A refused upgrade may have carried the new protocol's first bytes.
        self.upstream_keep_alive = self.rparser.should_keep_alive() and not self.upgrade_tail
        if status == 101:
            return    # handled when the parser stops at the protocol switch
        head_request = self.method == b"HEAD"
        fields = http1.scan(self.resp_headers)
        framing = http1.response_framing(fields, status, head_request)
        client_framing = http1.client_framing(framing, self.version)
        keep_alive = (self.keep_alive and client_framing != CLOSE and self.upgrade is None
                      and not self.client.closing)
        if keep_alive:
            connection = b"keep-alive" if self.version == "1.0" else None
        else:
            connection = b"close"
        self.client_keep_alive = keep_alive
        self.resp_framing, self.resp_remaining = framing, fields.length
        self.client_framing = client_framing
        self.out.append(http1.response_head(status, self.reason, fields, client_framing,
                                            connection))
        self.resp_started = True
        self.client.arm(STREAM, self.worker.config.timeouts.idle)
        if head_request:
            self.resp_complete = True    # httptools cannot know a HEAD response has no body

    def on_body(self, body: bytes) -> None:
        if self.resp_complete:
            return
        self.bytes_out += len(body)
        if self.resp_framing == LENGTH:
            self.resp_remaining -= len(body)
        self.out.append(http1.chunk(body) if self.client_framing == CHUNKED else body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        elif not self.resp_complete and self.status != 101:
            self._end_response()

    def _end_response(self) -> None:
        self.resp_complete = True
        if self.client_framing == CHUNKED:
            self.out.append(http1.last_chunk(self.resp_trailers))

    # -- response (I/O) --------------------------------------------------
    def on_upstream_data(self, data: bytes) -> None:
        client = self.client
        client.last_io = self.worker.clock.now
        try:
            self.rparser.feed_data(data)
        except httptools.HttpParserUpgrade as switch:
            self._switch_protocols(data[switch.args[0]:])
            return
        except httptools.HttpParserError as exc:
            self.fail(502, f"invalid response from backend: {exc}")
            return
        self._flush()
        if self.resp_complete:
            client.exchange_done(self, self.request_complete and self.upstream_keep_alive)
        elif (self.resp_framing == LENGTH and self.client_framing == LENGTH
              and self.resp_remaining >= SPLICE_MIN and self.worker.splice_bodies):
            self._splice_response()
        elif client.stream.pending >= client.limits.buffer:
            upstream = self.upstream.stream
            upstream.stop_reading()
            client.stream.when_drained(lambda: self.done or upstream.start_reading())

    def _flush(self) -> None:
        if self.out:
            data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
            self.out.clear()
            self.client.stream.write(data)

    def _splice_response(self) -> None:
        upstream = self.upstream
        upstream.stream.stop_reading()
        self.splice = SplicePump(self.worker.reactor, upstream.stream.fd, self.client.stream.fd,
                                 self.resp_remaining, self._response_spliced)
        self.client.stream.when_drained(self.splice.start)

    def _response_spliced(self, error: OSError | None) -> None:
        pump, self.splice = self.splice, None
        if self.done:
            return
        if error is not None:
            self.abort(f"response body relay failed: {error}")
            return
        self.bytes_out += pump.moved
        self.resp_complete = True
        self.upstream.stream.start_reading()
        self.client.exchange_done(self, self.request_complete)

    def on_upstream_closed(self, exc: OSError | None) -> None:
        self.peer_closed = True
        if exc is None and self.resp_started and self.resp_framing == CLOSE:
            self._end_response()     # close-delimited body: EOF is its end
            self._flush()
            self.client.exchange_done(self, False)
        elif self._retryable():
            self._retry()
        elif exc is None:
            self.fail(502, "backend closed the connection early")
        else:
            self.fail(502, f"backend connection failed: {exc.strerror or exc}")

    def _retryable(self) -> bool:
        """A reused connection the backend had closed: safe to try once more on a
        fresh one when nothing of the response came and no body was sent."""
        return (self.reused and not self.retried and not self.resp_started
                and self.rparser is not None and self.req_framing == NONE
                and self.upgrade is None)

    def _retry(self) -> None:
        self.retried = True
        self.backend.pool.retries += 1
        upstream, self.upstream = self.upstream, None
        self.worker.pool.discard(upstream, by_peer=True)
        self.resp_headers = []
        self.reason = b""
        self.interim = False
        self.peer_closed = False
        if self.worker.pool.can_open(self.backend):
            self._open()
        else:
            self.fail(503, f"backend {self.backend.name} at pool.max_active")

    def _switch_protocols(self, tail: bytes) -> None:
        """101 from the backend: both connections become one byte stream."""
        client, worker = self.client, self.worker
        if self.upgrade is None:
            self.fail(502, "backend switched protocols unasked")
            return
        head = http1.response_head(101, self.reason, http1.scan(self.resp_headers), NONE,
                                   None, upgrade=self.upgrade)
        self.resp_started = True
        client.stream.write(head + tail)
        self._log()
        self._release_backend()    # a stream, no longer a request in flight
        self.done = True
        upstream = self.upstream
        handed = []

        def hand_over() -> None:
            if handed or client.stream.pending or upstream.stream.pending:
                return      # called again by the other stream's drain
            handed.append(True)
            relay = make_relay(worker.relay_engine, worker.reactor, client.upgraded(),
                               worker.pool.detach(upstream), worker.forget,
                               worker.config.limits.buffer)
            worker.connections.add(relay)
            relay.start()

        client.stream.when_drained(hand_over)
        upstream.stream.when_drained(hand_over)

    # -- endings ---------------------------------------------------------
    def fail(self, status: int, detail: str) -> None:
        """The backend side failed: answer with an error if nothing was sent yet."""
        self.error = detail
        if self.backend is not None and status >= 500:
            self.backend.errors += 1
        if self.resp_started:
            self.abort(detail)
            return
        self.status = status
        self._release_upstream(False)
        client = self.client
        self.out = [http1.error_response(status, detail)]
        self.client_keep_alive = False
        self.resp_started = self.resp_complete = True
        self._flush()
        client.exchange_done(self, False)

    def abort(self, detail: str) -> None:
        """Give up mid-stream: the client sees its connection reset."""
        self.error = self.error or detail
        log.warning("exchange aborted", client=self.client.peer.decode(), reason=detail,
                    backend=self.backend.name if self.backend else None)
        self._log()
        self.done = True
        self._release_upstream(False)
        self.client.abort()

    def cancel(self) -> None:
        """The client went away: drop the backend side."""
        if not self.done:
            self.done = True
            self._release_upstream(False)

    def finish(self, reuse: bool) -> None:
        self._log()
        self.done = True
        self._release_upstream(reuse)

    def _release_backend(self) -> None:
        if self.queued:
            self.queued = False
            self.worker.pool.unqueue(self.backend, self, timed_out=self.timed_out)
        if self.inflight:
            self.inflight = False
            self.worker.balancer.release(self.backend)

    def _release_upstream(self, reuse: bool) -> None:
        self._release_backend()
        self.rparser = None   # it refers back to us: no cycle left for the GC
        if self.splice is not None:
            self.splice.stop()
            self.splice = None
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        upstream, self.upstream = self.upstream, None
        if upstream is None:
            return
        if reuse and not upstream.stream.pending:
            self.worker.pool.release(upstream, self.worker.clock.now)
        else:
            self.worker.pool.discard(upstream, by_peer=self.peer_closed)

    def _log(self) -> None:
        if self.done:
            return
        worker = self.worker
        worker.stats.requests += 1
        if self.status >= 500 or self.error:
            worker.stats.errors += 1
        ms = round((time.monotonic() - self.started) * 1000, 2)
        backend = self.backend.name if self.backend else ""
        worker.record(backend, self.status, ms, self.bytes_in, self.bytes_out, self.error)
        if worker.config.log.access:
            fields = {
                "client": self.client.peer.decode(), "method": self.method.decode(),
                "path": self.target.decode("latin-1"), "status": self.status,
                "backend": backend or None, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "ms": ms}
            if self.error:
                fields["error"] = self.error
            logs.access("request", fields)
