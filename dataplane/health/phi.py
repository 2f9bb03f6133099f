"""The phi-accrual failure detector (Hayashibara et al., SRDS 2004), per backend.

A heartbeat is a successful active probe, counted when its answer arrives
however late. The window holds the last ``window`` inter-arrival times of
heartbeats; phi is how unlikely the silence since the last sign of life is,
under a normal distribution with the window's mean (plus
``acceptable_pause``) and standard deviation (at least ``min_std``):

    phi(t) = -log10(1 - F(t)),  1 - F(t) = erfc((t - mean) / (std * sqrt 2)) / 2

A successful request is a sign of life too: it moves the time of the last
sign forward but never enters the window, so traffic that comes and goes
cannot make an idle backend look dead or teach the window short intervals.
A detector with fewer than ``MIN_SAMPLES`` intervals has no opinion (phi 0):
the probe rules decide until it has.
"""

from __future__ import annotations

import math
from collections import deque

MIN_SAMPLES = 3
_LOG10_E = math.log10(math.e)
_HALF_LOG_PI = 0.5 * math.log(math.pi)


def phi_of(elapsed: float, mean: float, std: float) -> float:
    """-log10 of the normal tail beyond ``elapsed``; finite for any input."""
    x = (elapsed - mean) / (std * math.sqrt(2.0))
    if x < 20.0:
        # erfc does not underflow here (erfc(20) is about 5e-176).
        return -math.log10(0.5 * math.erfc(x))
    # erfc(x) = exp(-x^2) / (x sqrt(pi)) * (1 - 1/(2x^2) + 3/(4x^4) - ...): in
    # logs, so no exp() underflows to 0 and no log(0) is taken.
    series = 1.0 - 1.0 / (2 * x * x) + 3.0 / (4 * x ** 4) - 15.0 / (8 * x ** 6)
    ln_tail = -x * x - math.log(x) - _HALF_LOG_PI + math.log(series) - math.log(2.0)
    return -ln_tail * _LOG10_E


class PhiDetector:
    __slots__ = ("window", "min_std", "acceptable_pause", "intervals", "total", "squares",
                 "last_probe", "last_seen")

    def __init__(self, window: int = 1000, min_std: float = 0.1,
                 acceptable_pause: float = 0.0) -> None:
        self.window = window
        self.min_std = min_std
        self.acceptable_pause = acceptable_pause
        self.intervals: deque[float] = deque()
        self.total = 0.0          # running sums over the window
        self.squares = 0.0
        self.last_probe: float | None = None   # the last heartbeat (probe answer)
        self.last_seen: float | None = None    # the last sign of life of any kind

    def heartbeat(self, now: float) -> None:
        """A probe answered successfully at ``now``."""
        if self.last_probe is not None and now > self.last_probe:
            self._add(now - self.last_probe)
        self.last_probe = now
        self.alive(now)

    def interrupt(self) -> None:
        """A probe failed outright: the next heartbeat starts a new interval
        instead of measuring the outage as if it were normal jitter."""
        self.last_probe = None

    def alive(self, now: float) -> None:
        """A sign of life that is not a heartbeat (a request succeeded)."""
        if self.last_seen is None or now > self.last_seen:
            self.last_seen = now

    def resume(self, intervals: list[float], last_probe: float | None,
               last_seen: float | None) -> None:
        """Continue the window another process measured (an upgrade)."""
        for interval in intervals[-self.window:]:
            self._add(interval)
        self.last_probe, self.last_seen = last_probe, last_seen

    def _add(self, interval: float) -> None:
        self.intervals.append(interval)
        self.total += interval
        self.squares += interval * interval
        if len(self.intervals) > self.window:
            old = self.intervals.popleft()
            self.total -= old
            self.squares -= old * old

    @property
    def ready(self) -> bool:
        """Enough history to have an opinion."""
        return len(self.intervals) >= MIN_SAMPLES

    def mean(self) -> float:
        return self.total / len(self.intervals) if self.intervals else 0.0

    def std(self) -> float:
        n = len(self.intervals)
        if n < 2:
            return 0.0
        mean = self.total / n
        return math.sqrt(max(0.0, self.squares / n - mean * mean))

    def phi(self, now: float, paused: float = 0.0) -> float:
        """Phi at ``now``; ``paused``: seconds of the silence that were our own
        stall, not the backend's (see pause.py)."""
        if not self.ready or self.last_seen is None:
            return 0.0
        elapsed = max(0.0, now - self.last_seen - paused)
        return phi_of(elapsed, self.mean() + self.acceptable_pause,
                      max(self.std(), self.min_std))
