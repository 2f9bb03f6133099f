"""What the control process counts from the workers' reports: per-backend
totals, status classes, error kinds, and a recent latency window."""

from __future__ import annotations

import time
from collections import deque

from .channel import Counters

WINDOW = 1000            # latencies kept per backend for p50/p99
CONNECT_ERRORS = ("cannot connect", "connect to backend timed out")
POOL_SUMS = ("open", "idle", "waiting", "retries", "connect_failures", "queue_timeouts",
             "opened", "reused")


class BackendTally:
    __slots__ = ("requests", "bytes_in", "bytes_out", "statuses", "connect_errors",
                 "response_errors", "latencies", "max_open", "max_queue", "state_changed")

    def __init__(self) -> None:
        self.requests = self.bytes_in = self.bytes_out = 0
        self.statuses = [0] * 6                 # index = status // 100
        self.connect_errors = self.response_errors = 0
        self.latencies: deque[float] = deque(maxlen=WINDOW)
        self.max_open = self.max_queue = 0
        self.state_changed = time.time()

    @property
    def errors(self) -> int:
        return self.connect_errors + self.response_errors

    def percentile(self, fraction: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class Tally:
    def __init__(self) -> None:
        self.backends: dict[str, BackendTally] = {}
        self.max_sessions = 0

    def backend(self, name: str) -> BackendTally:
        tally = self.backends.get(name)
        if tally is None:
            tally = self.backends[name] = BackendTally()
        return tally

    def outcomes(self, records: list) -> None:
        for name, status, ms, bytes_in, bytes_out, error in records:
            if not name:
                continue           # answered by the balancer before choosing a backend
            tally = self.backend(name)
            tally.requests += 1
            tally.bytes_in += bytes_in
            tally.bytes_out += bytes_out
            if 100 <= status < 600:
                tally.statuses[status // 100] += 1
            if error:
                if error.startswith(CONNECT_ERRORS):
                    tally.connect_errors += 1
                else:
                    tally.response_errors += 1
            else:
                tally.latencies.append(ms)

    @staticmethod
    def pool_totals(reports: list[Counters]) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = {}
        for report in reports:
            for name, figures in report.backends.items():
                into = totals.setdefault(name, dict.fromkeys(POOL_SUMS, 0))
                figures = {**figures, "open": figures["idle"] + figures["busy"]}
                for key in POOL_SUMS:
                    into[key] += figures.get(key, 0)
        return totals
