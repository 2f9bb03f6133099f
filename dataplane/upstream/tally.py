"""What one host's traffic came to in one worker since the last report: the
figures the control process adds up for ``lbctl stats``, ``lbctl backends``
and the metrics. Counted in place as requests end and sent with the
worker's periodic report, never one message per request. No I/O.

Latencies are sampled: every ``stride``-th answered request, the stride
doubling (and every other sample dropped) whenever ``SAMPLES`` are held, so
a busy interval keeps an even spread of at most that many.
"""

from __future__ import annotations

from bisect import bisect_left

import msgspec

SAMPLES = 64              # latencies kept per host per report
# Milliseconds: the duration histogram's bounds (metrics/families.py BUCKETS).
BOUNDS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class HostFigures(msgspec.Struct, array_like=True, gc=False):
    """One host's figures in one report (a worker's Counters message)."""
    requests: int = 0         # requests (HTTP) or connections (TCP) that ended
    answered: int = 0         # ...of which the backend's answer reached the client
    bytes_in: int = 0         # request body bytes (TCP: all bytes moved)
    bytes_out: int = 0        # response body bytes
    statuses: list[int] = msgspec.field(default_factory=lambda: [0] * 6)   # by status // 100
    connect_errors: int = 0
    response_errors: int = 0
    latencies: list[float] = []        # ms, sampled
    durations: list[int] = []          # per BOUNDS_MS bound, then beyond the last (metrics on)
    duration_ms: float = 0.0           # the sum of every answered request's ms (metrics on)


class HostTally:
    """Counted in place; ``take`` hands the figures over and starts again."""
    __slots__ = ("requests", "answered", "bytes_in", "bytes_out", "statuses", "connect_errors",
                 "response_errors", "latencies", "stride", "durations", "duration_ms")

    def __init__(self, histogram: bool = False) -> None:
        self.durations: list[int] | None = [0] * (len(BOUNDS_MS) + 1) if histogram else None
        self._reset()

    def _reset(self) -> None:
        self.requests = self.answered = self.bytes_in = self.bytes_out = 0
        self.statuses = [0] * 6
        self.connect_errors = self.response_errors = 0
        self.latencies: list[float] = []
        self.stride = 1
        if self.durations is not None:
            self.durations = [0] * (len(BOUNDS_MS) + 1)
        self.duration_ms = 0.0

    def answer(self, status: int, ms: float, bytes_in: int, bytes_out: int) -> None:
        """A request the backend answered (its status reached the client)."""
        self.requests += 1
        self.answered += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.statuses[status // 100] += 1
        if not self.answered % self.stride:
            self.sample(ms)
        if self.durations is not None:
            self.durations[bisect_left(BOUNDS_MS, ms)] += 1
            self.duration_ms += ms

    def sample(self, ms: float) -> None:
        latencies = self.latencies
        latencies.append(ms)
        if len(latencies) >= SAMPLES:
            del latencies[::2]
            self.stride *= 2

    def failure(self, status: int, bytes_in: int, bytes_out: int, connect: bool) -> None:
        """A request that failed on the way (``status``: what the client got, 0 none)."""
        self.requests += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        if 100 <= status < 600:
            self.statuses[status // 100] += 1
        if connect:
            self.connect_errors += 1
        else:
            self.response_errors += 1

    def take(self) -> HostFigures | None:
        """The figures since the last take, or None when nothing happened."""
        if not self.requests:
            return None
        figures = HostFigures(self.requests, self.answered, self.bytes_in, self.bytes_out,
                              self.statuses, self.connect_errors, self.response_errors,
                              self.latencies, self.durations or [], self.duration_ms)
        self._reset()
        return figures
