"""What the control process counts from the workers' reports: per-backend
totals, status classes, error kinds, and a recent latency window."""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

from ..channel.messages import Counters
from ..config import backend_key
from ..upstream.outcome import ErrorKind, Outcome

WINDOW = 1000            # latencies kept per backend for p50/p99
# Milliseconds: the duration histogram's bounds (metrics/families.py BUCKETS).
BOUNDS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
POOL_SUMS = ("open", "idle", "waiting", "inflight", "retries", "retries_budget_exhausted",
             "connect_failures", "queue_timeouts", "opened", "reused",
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

    @property
    def errors(self) -> int:
        return self.connect_errors + self.response_errors

    def percentile(self, fraction: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class Tally:
    def __init__(self, histogram: bool = False) -> None:
        """``histogram``: keep the durations' histogram (only /metrics shows it)."""
        self.backends: dict[str, BackendTally] = {}
        self.histogram = histogram
        self.max_sessions = 0

    def backend(self, name: str) -> BackendTally:
        tally = self.backends.get(name)
        if tally is None:
            tally = self.backends[name] = BackendTally()
        return tally

    def outcomes(self, records: list[Outcome]) -> set[str]:
        """Count a worker's batch; the backends that answered in it (each once,
        however many of its requests the batch holds)."""
        answered: set[str] = set()
        # Per batch: few backends, many records.
        found: dict[tuple[str, str], tuple[str, BackendTally]] = {}
        histogram = self.histogram
        for outcome in records:
            if not outcome.backend:
                continue           # answered by the balancer before choosing a backend
            pair = (outcome.cluster, outcome.backend)
            known = found.get(pair)
            if known is None:
                name = backend_key(*pair)
                known = found[pair] = (name, self.backend(name))
            name, tally = known
            tally.requests += 1
            tally.bytes_in += outcome.bytes_in
            tally.bytes_out += outcome.bytes_out
            status = outcome.status
            if 100 <= status < 600:
                tally.statuses[status // 100] += 1
            if outcome.error is ErrorKind.NONE:
                ms = outcome.ms
                tally.latencies.append(ms)
                if histogram:
                    tally.durations[bisect_left(BOUNDS_MS, ms)] += 1
                    tally.duration_ms += ms
                answered.add(name)
            elif outcome.error.connect:
                tally.connect_errors += 1
            else:
                tally.response_errors += 1
        return answered

    @staticmethod
    def pool_totals(reports: list[Counters]) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = {}
        for report in reports:
            for name, figures in _hosts(report):
                into = totals.setdefault(name, dict.fromkeys(POOL_SUMS, 0))
                figures = {**figures, "open": figures["idle"] + figures["busy"]}
                for key in POOL_SUMS:
                    into[key] += figures.get(key, 0)
        return totals


def _hosts(report: Counters):
    """(backend key, pool figures) over every cluster of a worker's report."""
    for cluster, hosts in report.clusters.items():
        for name, figures in hosts.items():
            yield backend_key(cluster, name), figures
