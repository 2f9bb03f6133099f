"""What a breaker counts as a failure or a slow call, and how much of a
group's weight breakers may take out at once."""

from __future__ import annotations

import math
from typing import Iterable

from ..config import BreakerSettings
from .machine import BreakerRules

# breaker.failure_on names these failure classes of the upstream outcome,
# and "5xx" or "503" for the backend's own answers.
CONNECT, RESET, TIMEOUT = "connect", "reset", "timeout"


class Judge:
    """What counts as a failed call and as a slow one (upstream.breakers.verdict_of
    applies it to each outcome)."""
    __slots__ = ("errors", "bad_statuses", "slow_ms")

    def __init__(self, failure_on: Iterable[str], slow_call: float | None) -> None:
        classes = set(failure_on)
        self.errors = frozenset(classes & {CONNECT, RESET, TIMEOUT})
        # Backend answers that count: every 5xx, or 503 alone.
        self.bad_statuses = frozenset(range(500, 600) if "5xx" in classes
                                      else (503,) if "503" in classes else ())
        self.slow_ms = slow_call * 1000 if slow_call else math.inf


def may_eject(weight: int, members: Iterable[tuple[int, bool]], percent: float) -> bool:
    """May one more backend of ``weight`` be ejected? ``members``: (weight,
    ejected now) of each backend of its group not in maintenance. The first
    always may (as in Envoy); after that, only while the ejected share of the
    weight stays within ``percent``."""
    total = ejected = 0
    for member_weight, out in members:
        total += member_weight
        ejected += member_weight if out else 0
    return ejected == 0 or (ejected + weight) * 100 <= total * percent


def share(limit: int | None, slot: int, workers: int) -> int | None:
    """A worker's part of a limit for the whole balancer: the limit split as
    evenly as whole numbers allow, the first ``limit % workers`` slots taking
    one more, so that the parts add up to exactly the limit (None: no limit)."""
    if limit is None:
        return None
    return limit // workers + (1 if slot < limit % workers else 0)


def rules_of(settings: BreakerSettings) -> BreakerRules:
    return BreakerRules(settings.window, settings.min_calls, settings.failure_rate / 100,
                 settings.consecutive_failures, settings.slow_call_rate / 100,
                 settings.open_for, settings.max_open_for, settings.half_open_calls)


def judge_of(settings: BreakerSettings) -> Judge:
    return Judge(settings.failure_on, settings.slow_call)
