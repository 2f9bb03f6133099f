"""What the control process counts from the workers' reports: per-backend
totals, status classes, error kinds, and a recent latency window, added up
from each report's host tallies (upstream/tally.py): no work per request."""

from __future__ import annotations

from collections import deque
from typing import Iterator

from ..channel.messages import Counters
from ..config import backend_key
from ..upstream.tally import BOUNDS_MS, HostFigures

WINDOW = 1000            # sampled latencies kept per backend for p50/p99
POOL_SUMS = ("open", "busy", "idle", "waiting", "inflight", "streams", "retries",
             "retries_budget_exhausted", "connect_failures", "queue_timeouts", "opened", "reused",
             "over_max_connections", "over_max_pending", "over_max_requests")


class BackendTally:
    __slots__ = ("requests", "bytes_in", "bytes_out", "statuses", "connect_errors",
                 "response_errors", "latencies", "max_open", "max_queue", "durations",
                 "duration_ms")

    def __init__(self) -> None:
        self.requests = self.bytes_in = self.bytes_out = 0
        self.statuses = [0] * 6                 # index = status // 100
        self.connect_errors = self.response_errors = 0
        self.latencies: deque[float] = deque(maxlen=WINDOW)
        self.max_open = self.max_queue = 0
        self.durations = [0] * (len(BOUNDS_MS) + 1)   # per bound, then beyond the last
        self.duration_ms = 0.0

    def add(self, figures: HostFigures) -> None:
        self.requests += figures.requests
        self.bytes_in += figures.bytes_in
        self.bytes_out += figures.bytes_out
        for index, count in enumerate(figures.statuses):
            self.statuses[index] += count
        self.connect_errors += figures.connect_errors
        self.response_errors += figures.response_errors
        self.latencies.extend(figures.latencies)
        if figures.durations:
            for index, count in enumerate(figures.durations):
                self.durations[index] += count
            self.duration_ms += figures.duration_ms

    @property
    def errors(self) -> int:
        return self.connect_errors + self.response_errors

    def percentile(self, fraction: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))], 3)


class Tally:
    def __init__(self) -> None:
        self.backends: dict[str, BackendTally] = {}
        self.max_sessions = 0

    def backend(self, name: str) -> BackendTally:
        tally = self.backends.get(name)
        if tally is None:
            tally = self.backends[name] = BackendTally()
        return tally

    def add(self, report: Counters) -> set[str]:
        """Add a worker's host tallies; the backends that answered in them."""
        answered: set[str] = set()
        for cluster, hosts in report.tallies.items():
            for host, figures in hosts.items():
                name = backend_key(cluster, host)
                self.backend(name).add(figures)
                if figures.answered:
                    answered.add(name)
        return answered

    @staticmethod
    def pool_totals(reports: list[Counters]) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = {}
        for report in reports:
            for name, figures in _hosts(report):
                into = totals.setdefault(name, dict.fromkeys(POOL_SUMS, 0))
                figures = {**figures, "open": figures["idle"] + figures["busy"]}   # busy: in use
                for key in POOL_SUMS:
                    into[key] += figures.get(key, 0)
        return totals


def _hosts(report: Counters) -> Iterator[tuple[str, dict[str, int]]]:
    """(backend key, pool figures) over every cluster of a worker's report."""
    for cluster, hosts in report.clusters.items():
        for name, figures in hosts.items():
            yield backend_key(cluster, name), figures
