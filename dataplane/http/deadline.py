"""What a client connection's one deadline guards, and, while bodies move,
which side has run out of time. No I/O, no clock.

The kinds (``timer.Timer.kind``): IDLE between requests, HEAD
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
from typing import Protocol

from ..config import TimeoutSettings

IDLE, HEAD, CONNECT, RESPONSE, STREAM, LINGER, QUEUE = range(7)
NEVER = math.inf


class Deadline(Protocol):
    """What an exchange may arm of its connection's one deadline (timer.Timer)."""
    def expect(self, kind: int, seconds: float) -> None: ...
    def watch_streams(self) -> None: ...
    def backend_active(self) -> None: ...


def stream_expiry(now: float, t: TimeoutSettings, client_in: float, backend_in: float,
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
