"""The retry budget of one cluster in one worker (``retries.budget_percent``
and ``retries.min_concurrent``). No I/O, no clock: the cluster rotates it.

Two sides must both allow a retry:

- concurrency (Envoy's): requests on a retry stay under ``budget_percent``
  of the requests under way on their first try, or under ``min_concurrent``;
- rate (as Linkerd's and the SRE book's): retries started in the last 5-10 s
  stay under ``budget_percent`` of the first tries started then, or under
  ``min_concurrent``, so that a retried request making several attempts
  cannot multiply the load past the budget.

Each worker holds it for its own requests: no worker waits on another, and
as SO_REUSEPORT spreads connections evenly the ratio holds overall.
"""

from __future__ import annotations

BUCKET = 5.0      # seconds per bucket of the rate side


class RetryBudget:
    __slots__ = ("share", "minimum", "retrying", "attempts_now", "retries_now",
                 "attempts_before", "retries_before", "bucket_start")

    def __init__(self, budget_percent: float, min_concurrent: int) -> None:
        self.share = budget_percent / 100
        self.minimum = min_concurrent
        self.retrying = 0          # requests now on a retry
        # Attempts and retries started in this and the previous bucket.
        self.attempts_now = self.retries_now = 0
        self.attempts_before = self.retries_before = 0
        self.bucket_start = 0.0

    def allows(self, in_flight: int) -> bool:
        """May one more retry start, with ``in_flight`` requests under way?"""
        first_tries = in_flight - self.retrying
        if self.retrying >= max(self.minimum, self.share * first_tries):
            return False
        retries = self.retries_now + self.retries_before
        firsts = self.attempts_now + self.attempts_before - retries
        return retries < max(self.minimum, self.share * firsts)

    def retried(self, first: bool) -> None:
        """A retry starts; ``first``: the request's first (it is on a retry
        from now until ``request_ended``)."""
        self.retries_now += 1
        if first:
            self.retrying += 1

    def request_ended(self) -> None:
        """A request that had been retried ended."""
        self.retrying -= 1

    def rotate(self, now: float) -> None:
        if now - self.bucket_start >= BUCKET:
            self.attempts_before, self.retries_before = self.attempts_now, self.retries_now
            self.attempts_now = self.retries_now = 0
            self.bucket_start = now
