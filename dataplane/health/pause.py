"""The local pause guard (Cassandra's idea): when the process doing the
detecting stalls (a GC pause, a stopped VM, an overloaded host), every
backend's silence grows by the stall, and none of it is the backend's fault.

The detector's loop calls ``tick(now)`` every ``period`` seconds; a gap
longer than ``period + slack`` is a stall, and its excess is added to
``total``. A backend's silence is judged net of the stall time accrued since
its last sign of life (``since(mark)``), so nobody is convicted on a gap the
stall created, while a backend silent before and after it still is.
"""

from __future__ import annotations


class PauseGuard:
    __slots__ = ("period", "slack", "last", "total")

    def __init__(self, period: float, slack: float = 0.25) -> None:
        self.period = period
        self.slack = slack
        self.last: float | None = None
        self.total = 0.0          # seconds of stall seen so far

    def tick(self, now: float) -> float:
        """The loop ran at ``now``; returns the stall just detected (0 if none)."""
        stall = 0.0
        if self.last is not None:
            gap = now - self.last
            if gap > self.period + self.slack:
                stall = gap - self.period
                self.total += stall
        self.last = now
        return stall

    def since(self, mark: float) -> float:
        """Stall seconds accrued since ``total`` was ``mark``."""
        return self.total - mark
