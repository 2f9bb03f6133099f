"""A client connection's timers: one deadline at a time, checked by the
worker's sweep (a mixin of ClientConnection; its slots hold the state).

What the deadline guards (``deadline_kind``): IDLE between requests, HEAD
while a request head arrives, CONNECT, QUEUE and RESPONSE while the active
request waits for a connection or a response head, STREAM while bodies move
and LINGER while closing. Under STREAM three sides are timed apart
(``stream_expiry``): the client's request body (``timeouts.client_body``),
the backend's response (``timeouts.backend_idle``, only while we read it),
and the client taking a response held back for it (``timeouts.client_write``,
from when ``limits.buffer`` filled up); ``timeouts.idle`` (no byte either
way) stays the outer bound. ``timeouts.total`` caps every deadline of an
exchange, retries included.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..config import Timeouts
from ..upstream.outcome import ErrorKind
from .rules import Reject

if TYPE_CHECKING:
    from ..site import Site
    from .exchange import Exchange

IDLE, HEAD, CONNECT, RESPONSE, STREAM, LINGER, QUEUE = range(7)
NEVER = math.inf


def stream_expiry(now: float, t: Timeouts, client_in: float, backend_in: float,
                  stalled_since: float | None, body_incomplete: bool,
                  reading_backend: bool) -> tuple[str | None, float]:
    """Which STREAM timeout has run out ("client_body", "backend_idle",
    "client_write", "idle") or None, and when the next one would."""
    due = [("idle", max(client_in, backend_in) + t.idle)]
    if body_incomplete:
        due.append(("client_body", client_in + t.client_body))
    if reading_backend:
        due.append(("backend_idle", backend_in + t.backend_idle))
    if stalled_since is not None:
        due.append(("client_write", stalled_since + t.client_write))
    name, at = min(due, key=lambda item: item[1])
    return (name if at <= now else None), at


class Deadlines:
    __slots__ = ()
    site: "Site"
    active: "Exchange | None"
    parsing: "Exchange | None"
    deadline: float
    deadline_kind: int
    total_at: float
    client_in: float
    backend_in: float
    stalled_since: float | None
    spliced_seen: int
    # Provided by the ClientConnection: close, reject_now, _spliced, _splice_stalled.

    def arm(self, kind: int, seconds: float) -> None:
        self.deadline_kind = kind
        at = self.site.clock.now + seconds
        self.deadline = at if at < self.total_at else self.total_at

    def arm_stream(self) -> None:
        """Bodies are moving: look again after the shortest timeout that can
        apply; the sweep then works out which side, if any, ran out (a cheap
        deadline per request, exact when it matters)."""
        self.arm(STREAM, self.site.stream_timeout)

    def check(self, now: float) -> None:
        """Called by the worker's timer sweep."""
        if now < self.deadline:
            return
        active = self.active
        if now >= self.total_at and active is not None:
            self.total_at = NEVER
            active.out_of_time()
            return
        kind = self.deadline_kind
        if kind == STREAM:
            self._check_stream(now)
        elif kind == IDLE and now - max(self.client_in, self.backend_in) < self.site.config.timeouts.idle:
            self.deadline = max(self.client_in, self.backend_in) + self.site.config.timeouts.idle
        elif kind in (IDLE, LINGER):
            self.close()
        elif kind == HEAD:
            self.reject_now(Reject(408, "request head not received in time")) \
                if self.parsing is not None else self.close()
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
        expired, at = self._stream_due(now)
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

    def _stream_due(self, now: float) -> tuple[str | None, float]:
        active = self.active
        moved = self._spliced()
        if moved != self.spliced_seen:      # kernel-side progress: both sides are alive
            self.spliced_seen = moved
            self.client_in = self.backend_in = now
            if self.stalled_since is not None:
                self.stalled_since = now
        stalled = self.stalled_since
        if stalled is None and self._splice_stalled():
            stalled = self.stalled_since = now
        return stream_expiry(now, self.site.config.timeouts, self.client_in, self.backend_in,
                             stalled, not active.request_complete and not active.responding,
                             active.responding and stalled is None)
