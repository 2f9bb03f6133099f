"""The dashboard's short history: per backend, one point a second of its
request rate, error rate and latency (p50, p99), for the last SPAN seconds.
No I/O: ``sample`` is given the time and each backend's running totals.

Latency comes from the duration histogram's counts (what the metrics
export): a second's percentile is read from the buckets that second filled,
interpolated within its bucket, so it needs no list of samples.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple, Sequence

SPAN = 300            # seconds of history kept
RECENT = 5            # seconds the tables' rates are averaged over


class Totals(NamedTuple):
    """A backend's running totals at one moment."""
    requests: int
    errors: int                  # 5xx answers and failed calls
    durations: Sequence[int]     # histogram counts per bound, then beyond the last


class Point(NamedTuple):
    at: float                    # wall clock, seconds
    rate: float                  # requests per second
    errors: float                # errors per second
    p50: float | None            # ms; None in a second without requests
    p99: float | None


class History:
    def __init__(self, bounds_ms: Sequence[float], span: int = SPAN) -> None:
        self.bounds = bounds_ms
        self.span = span
        self.series: dict[str, deque[Point]] = {}
        self.last: dict[str, tuple[float, Totals]] = {}

    def sample(self, now: float, wall: float, totals: dict[str, Totals]) -> None:
        """Add a point per backend for the time since its last sample
        (``now``: monotonic); forget backends no longer named."""
        for name in set(self.series) - set(totals):
            del self.series[name]
            self.last.pop(name, None)
        for name, current in totals.items():
            before = self.last.get(name)
            self.last[name] = (now, current)
            if before is None or now <= before[0] or current.requests < before[1].requests:
                continue      # the first sample, or totals that started again
            seconds, previous = now - before[0], before[1]
            counts = [a - b for a, b in zip(current.durations, previous.durations)]
            series = self.series.setdefault(name, deque(maxlen=self.span))
            series.append(Point(round(wall, 3), round((current.requests - previous.requests)
                                                       / seconds, 2),
                                round(max(0, current.errors - previous.errors) / seconds, 2),
                                self.percentile(counts, 0.5), self.percentile(counts, 0.99)))

    def percentile(self, counts: Sequence[int], fraction: float) -> float | None:
        """The ms below which ``fraction`` of the counted durations fell,
        interpolated linearly within its bucket (the last bound when beyond)."""
        total = sum(counts)
        if total <= 0:
            return None
        wanted, below = fraction * total, 0
        for index, count in enumerate(counts):
            if count and below + count >= wanted:
                if index >= len(self.bounds):
                    return float(self.bounds[-1])
                low = self.bounds[index - 1] if index else 0.0
                return round(low + (self.bounds[index] - low) * (wanted - below) / count, 3)
            below += count
        return float(self.bounds[-1])

    def recent(self, name: str) -> tuple[float, float]:
        """Requests per second and the errors' share of requests over the last
        RECENT points."""
        points = list(self.series.get(name, ()))[-RECENT:]
        requests = sum(p.rate for p in points)
        rate = requests / len(points) if points else 0.0
        share = sum(p.errors for p in points) / requests if requests else 0.0
        return round(rate, 2), round(min(1.0, share), 4)

    def export(self) -> dict[str, dict[str, list[float | None]]]:
        """Each backend's points as columns (compact JSON)."""
        return {name: {"t": [p.at for p in points], "rate": [p.rate for p in points],
                       "errors": [p.errors for p in points], "p50": [p.p50 for p in points],
                       "p99": [p.p99 for p in points]}
                for name, points in self.series.items()}
