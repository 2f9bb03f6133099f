"""A client connection's one deadline: what it is armed for, and what happens
when it passes (the worker's sweep asks each connection; ``fire``).

The timer also keeps the readings its verdicts need: the last byte from each
side, since when a response has waited for the client, and how much splice
has moved, so that under STREAM it can tell which side ran out
(deadline.stream_expiry). What each kind guards: deadline.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from ..io.relay import SplicePump
from ..upstream.outcome import ErrorKind
from .codec import Reject
from .deadline import CONNECT, HEAD, IDLE, LINGER, NEVER, QUEUE, RESPONSE, STREAM, stream_expiry
from .exchange import Exchange

if TYPE_CHECKING:
    from ..io.stream import Stream
    from ..worker_view import WorkerView


class Timed(Protocol):
    """The connection a timer acts on when its deadline passes."""
    active: Exchange | None
    splice: SplicePump | None          # a request body moving in the kernel

    def head_begun(self) -> bool: ...   # part of a request head has arrived
    def lane_hands_over(self) -> None: ...
    def close(self) -> None: ...
    def reject_now(self, reject: Reject) -> None: ...


class Timer:
    __slots__ = ("owner", "worker", "at", "kind", "total_at", "client_in", "backend_in",
                 "stalled_since", "spliced_seen")

    def __init__(self, owner: Timed, worker: "WorkerView") -> None:
        self.owner = owner
        self.worker = worker
        self.kind = HEAD
        self.at = 0.0
        self.total_at = NEVER         # timeouts.total of the active request
        self.client_in = self.backend_in = worker.clock.now   # last byte from each side
        self.stalled_since: float | None = None   # a response held back for the client
        self.spliced_seen = 0

    def expect(self, kind: int, seconds: float) -> None:
        """``kind`` must happen within ``seconds`` (and within timeouts.total)."""
        self.kind = kind
        at = self.worker.clock.now + seconds
        self.at = at if at < self.total_at else self.total_at

    def watch_streams(self) -> None:
        """Bodies are moving: look again after the shortest timeout that can
        apply; the sweep then works out which side, if any, ran out (a cheap
        deadline per request, exact when it matters)."""
        self.expect(STREAM, self.worker.stream_timeout)

    def backend_active(self) -> None:
        """Bytes came from the backend: it is not idle."""
        self.backend_in = self.worker.clock.now

    def hold_back(self, upstream: "Stream", exchange: Exchange) -> Callable[[], None]:
        """A response waits for the client to take limits.buffer of it: the
        backend is not read, and timeouts.client_write runs, until the
        callback returned is called (when the client has taken it)."""
        upstream.stop_reading()
        self.stalled_since = self.worker.clock.now
        self.watch_streams()

        def taken() -> None:
            self.stalled_since = None
            if not exchange.done:
                upstream.start_reading()
        return taken

    def expect_until(self, kind: int, at: float, total_at: float | None) -> None:
        """``kind`` must happen by ``at``, and the request end by ``total_at``
        (timeouts.total or its route's; None: neither applies)."""
        self.kind = kind
        if total_at is None:
            self.at = at
        else:
            self.total_at = total_at
            self.at = at if at < total_at else total_at

    def idle(self, now: float) -> None:
        """A request was answered: the connection may idle until the next."""
        self.total_at = NEVER
        self.kind = IDLE
        self.at = now + self.worker.idle_timeout

    def fire(self, now: float) -> None:
        """The deadline has passed: what ran out, and its consequence."""
        owner = self.owner
        owner.lane_hands_over()
        active = owner.active
        if now >= self.total_at and active is not None:
            self.total_at = NEVER
            active.out_of_time()
            return
        kind = self.kind
        idle = self.worker.config.timeouts.idle
        if kind == STREAM:
            self._stream(now, active)
        elif kind == IDLE and now - max(self.client_in, self.backend_in) < idle:
            self.at = max(self.client_in, self.backend_in) + idle
        elif kind in (IDLE, LINGER):
            owner.close()
        elif kind == HEAD:
            if owner.head_begun():
                owner.reject_now(Reject(408, "request head not received in time"))
            else:
                owner.close()
        elif active is None:
            owner.close()
        elif kind == CONNECT:
            active.attempt_failed(504, ErrorKind.CONNECT_TIMEOUT, "connect to backend timed out")
        elif kind == RESPONSE:
            active.attempt_failed(504, ErrorKind.RESPONSE_TIMEOUT,
                                  "backend did not respond in time")
        elif kind == QUEUE:
            active.queue_timed_out()

    def _stream(self, now: float, active: Exchange | None) -> None:
        if active is None:
            self.owner.close()
            return
        expired, at = self._stream_due(active, now)
        if expired is None:
            self.at = min(at, self.total_at)
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
        splice = self.owner.splice
        moved = splice.moved if splice is not None else 0
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
        return stream_expiry(now, self.worker.config.timeouts, self.client_in, self.backend_in,
                             stalled, not active.request_complete and not active.responding,
                             active.responding and stalled is None)
