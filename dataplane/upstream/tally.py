"""What one host's traffic came to in one worker since the last report: the
figures the control process adds up for ``lbctl stats``, ``lbctl backends``
and the metrics. No I/O.

Each request (or TCP connection) that ends leaves one record in ``calls``:
a tuple appended to a list, the cheapest record Python keeps. The worker's
report, every timer tick, sums them up (``take``, mostly in C) and sends the
figures: no message and no counting per request. Latencies are sampled at the report,
evenly over its calls, at most ``SAMPLES`` of them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter

import msgspec

from .outcome import ErrorKind

SAMPLES = 64              # latencies kept per host per report
# Milliseconds: the duration histogram's bounds (metrics/families.py BUCKETS).
BOUNDS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

# One finished call: status sent to the client (0: none), ms, request body
# bytes (TCP: all bytes moved), response body bytes, how it failed (None:
# answered; a tuple of plain values only, the garbage collector lets go of
# it at its first pass).
Call = tuple[int, float, int, int, ErrorKind | None]


class HostFigures(msgspec.Struct, array_like=True, gc=False):
    """One host's figures in one report (a worker's Counters message)."""
    requests: int = 0         # requests (HTTP) or connections (TCP) that ended
    answered: int = 0         # ...of which the backend's answer reached the client
    bytes_in: int = 0         # request body bytes (TCP: all bytes moved)
    bytes_out: int = 0        # response body bytes
    statuses: list[int] = msgspec.field(default_factory=lambda: [0] * 6)   # by status // 100
    connect_errors: int = 0
    response_errors: int = 0
    latencies: list[float] = []        # ms of answered calls, sampled
    durations: list[int] = []          # per BOUNDS_MS bound, then beyond the last (metrics on)
    duration_ms: float = 0.0           # the sum of every answered call's ms (metrics on)


class HostTally:
    """The calls since the last report; ``take`` sums them up and starts again."""
    __slots__ = ("calls", "histogram")

    def __init__(self, histogram: bool = False) -> None:
        self.calls: list[Call] = []
        self.histogram = histogram     # count durations by bucket (metrics on)

    def take(self) -> HostFigures | None:
        """The figures of the calls since the last take, or None when none ended.
        The sums run in C (zip, sum, count, sort): Python steps only per
        distinct status and per failed call, not per call."""
        calls = self.calls
        if not calls:
            return None
        self.calls = []
        codes, mss, ins, outs, kinds = zip(*calls)
        figures = HostFigures(requests=len(calls), bytes_in=sum(ins), bytes_out=sum(outs))
        statuses = figures.statuses
        first = codes[0]       # most reports hold one status: counted without a Counter
        counts = {first: len(codes)} if codes.count(first) == len(codes) else Counter(codes)
        for code, count in counts.items():
            if 100 <= code < 600:
                statuses[code // 100] += count
        if kinds.count(None) == len(kinds):
            answered = list(mss)
        else:
            answered = [ms for ms, kind in zip(mss, kinds) if kind is None]
            for kind in kinds:
                if kind is None:
                    continue
                if kind.connect:
                    figures.connect_errors += 1
                else:
                    figures.response_errors += 1
        figures.answered = len(answered)
        step = -(-len(answered) // SAMPLES)      # ceiling: at most SAMPLES kept
        figures.latencies = answered[::step] if answered else []
        if self.histogram and answered:
            figures.durations, figures.duration_ms = _histogram(answered), sum(answered)
        return figures


def _histogram(answered: list[float]) -> list[int]:
    """How many of ``answered`` fall in each BOUNDS_MS bucket (a bound is the
    top of its bucket), then beyond the last."""
    ordered = sorted(answered)
    below = [bisect_right(ordered, bound) for bound in BOUNDS_MS]
    return [b - a for a, b in zip([0, *below], [*below, len(ordered)])]
