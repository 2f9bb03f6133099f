"""What a breaker counts as a failure or a slow call, and how much of a
group's weight breakers may take out at once."""

from __future__ import annotations

import math
from typing import Iterable

from ..config import Breaker as BreakerSettings
from .machine import Rules

# breaker.failure_on: the classes of failure a breaker counts. The first
# three are the upstream outcome's failure classes; 5xx and 503 are answers.
CONNECT, RESET, TIMEOUT = "connect", "reset", "timeout"
FAILURE_CLASSES = (CONNECT, RESET, TIMEOUT, "5xx", "503")
DEFAULT_FAILURE_ON = (CONNECT, RESET, TIMEOUT, "5xx")


class Judge:
    """A call's result -> (failed, slow)."""
    __slots__ = ("errors", "first_5xx", "slow_ms")

    def __init__(self, failure_on: Iterable[str], slow_call: float | None) -> None:
        classes = set(failure_on)
        self.errors = frozenset(classes & {CONNECT, RESET, TIMEOUT})
        # The lowest backend status that counts: 500 for 5xx, 503 for 503 only.
        self.first_5xx = 500 if "5xx" in classes else 503 if "503" in classes else 1000
        self.slow_ms = slow_call * 1000 if slow_call else math.inf

    def failed(self, error_class: str | None, status: int) -> bool:
        """``error_class``: the outcome's failure class ("" when the backend
        answered, None for what is not the backend's fault)."""
        if error_class:
            return error_class in self.errors
        if error_class is None:
            return False
        return status >= self.first_5xx and (status == 503 or self.first_5xx == 500)

    def slow(self, ms: float) -> bool:
        return ms > self.slow_ms


def may_eject(weight: int, ejected: int, total: int, percent: float) -> bool:
    """May one more backend of ``weight`` be ejected, with ``ejected`` of the
    ``total`` weight out already? The first always may (as in Envoy); after
    that, only while the ejected share stays within ``percent``."""
    return ejected == 0 or (ejected + weight) * 100 <= total * percent


def share(limit: int | None, slot: int, workers: int) -> int | None:
    """A worker's part of a limit for the whole balancer: the limit split as
    evenly as whole numbers allow, the first ``limit % workers`` slots taking
    one more, so that the parts add up to exactly the limit (None: no limit)."""
    if limit is None:
        return None
    return limit // workers + (1 if slot < limit % workers else 0)


def rules_of(settings: BreakerSettings) -> Rules:
    return Rules(settings.window, settings.min_calls, settings.failure_rate / 100,
                 settings.consecutive_failures, settings.slow_call_rate / 100,
                 settings.open_for, settings.max_open_for, settings.half_open_calls)


def judge_of(settings: BreakerSettings) -> Judge:
    return Judge(settings.failure_on, settings.slow_call)
