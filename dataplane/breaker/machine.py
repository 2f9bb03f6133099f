"""One backend's circuit breaker, without I/O: closed -> open -> half_open.

- closed: call results go into a CallWindow, a batch at a time. The breaker
  asks to trip (``record_many`` returns the reason) when ``consecutive`` failures come in a
  row, or, with at least ``min_calls`` calls in the window, when failures
  reach ``failure_rate`` or slow calls reach ``slow_rate`` of them. Whether
  it trips is the caller's call (``open``): the ejection cap may say no.
- open: for ``open_for`` seconds, doubled on each trip that follows another
  without a close between them, at most ``max_open_for``. Results of calls
  that began before the trip are ignored.
- half_open: ``trial_calls`` trial calls are let through (the caller hands
  out the permits). All pass: closed, with a fresh window and the open time
  back to ``open_for``. Any fails (or is slow): open again, for twice as long.

Every transition is kept (the last ``HISTORY``) with its reason.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import NamedTuple

from .window import CallWindow

HISTORY = 20


class Phase(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerRules(NamedTuple):
    window: int = 100
    min_calls: int = 20
    failure_rate: float = 0.5          # a fraction of the window's calls
    consecutive: int = 5
    slow_rate: float = 0.8
    open_for: float = 5.0
    max_open_for: float = 300.0
    trial_calls: int = 1


class BreakerTransition(NamedTuple):
    at: float
    old: Phase
    new: Phase
    reason: str


class Breaker:
    def __init__(self, rules: BreakerRules) -> None:
        self.rules = rules
        self.phase = Phase.CLOSED
        self.window = CallWindow(rules.window)
        self.trips = 0              # trips since the last close: the open time doubles
        self.until = 0.0            # open: when it turns half_open
        self.passed = 0             # half_open: trials passed so far
        self.history: deque[BreakerTransition] = deque(maxlen=HISTORY)

    # -- call results --------------------------------------------------------
    def record_many(self, marks: bytes) -> str | None:
        """Closed: many call results at once (``window.FAILED | SLOW`` marks, in
        the order they ended); the reason to trip, if it should."""
        if self.phase is not Phase.CLOSED:
            return None
        run = self.window.extend(marks)
        if run >= self.rules.consecutive:
            return f"{run} failures in a row"
        return self.reason()

    def reason(self) -> str | None:
        """Why the closed window says trip, or None."""
        rules, window = self.rules, self.window
        if window.in_a_row >= rules.consecutive:
            return f"{window.in_a_row} failures in a row"
        if window.calls < rules.min_calls:
            return None
        if window.failures >= rules.failure_rate * window.calls:
            return f"{window.failures} of the last {window.calls} calls failed"
        if window.slow >= rules.slow_rate * window.calls:
            return f"{window.slow} of the last {window.calls} calls were slow"
        return None

    def trial(self, now: float, passed: bool) -> None:
        """A half-open trial call ended."""
        if self.phase is not Phase.HALF_OPEN:
            return
        if not passed:
            self.open(now, "a trial call failed")
            return
        self.passed += 1
        if self.passed >= self.rules.trial_calls:
            self._move(now, Phase.CLOSED, f"{self.passed} trial calls passed")
            self.trips = 0
            self.window.clear()

    # -- time and decisions --------------------------------------------------
    def open(self, now: float, reason: str) -> None:
        """Trip (or reopen after a failed trial), for the current open time."""
        self.trips += 1
        self.until = now + self.open_time()
        self._move(now, Phase.OPEN, reason)

    def open_time(self) -> float:
        """open_for doubled per trip in a row (the first trip: open_for)."""
        rules = self.rules
        return min(rules.max_open_for, rules.open_for * 2.0 ** max(0, min(self.trips - 1, 30)))

    def poll(self, now: float) -> bool:
        """Open and its time is up: half_open. True if it moved."""
        if self.phase is Phase.OPEN and now >= self.until:
            self.passed = 0
            self._move(now, Phase.HALF_OPEN, "open time over")
            return True
        return False

    def force(self, now: float, phase: Phase, reason: str) -> None:
        """An operator's order: closed (fresh window, open time reset) or open
        (until told otherwise)."""
        if phase is Phase.OPEN:
            self.until = float("inf")
        else:
            self.trips = 0
            self.window.clear()
        self._move(now, phase, reason)

    def resume(self, now: float, phase: Phase, trips: int, until: float) -> None:
        """Continue another process's breaker (an upgrade). Half-open comes
        back as open until ``now``: its trials start again under this
        process's permits."""
        if phase is Phase.CLOSED:
            return
        self.trips, self.until = trips, now if phase is Phase.HALF_OPEN else until
        self._move(now, Phase.OPEN, "carried over from the previous process")

    def _move(self, now: float, new: Phase, reason: str) -> None:
        self.history.append(BreakerTransition(now, self.phase, new, reason))
        self.phase = new
