"""What a worker concludes about its hosts' health from traffic alone (no
I/O): passive health and panic. The Cluster applies the verdicts.

Passive health: a refused connect on a new connection marks the host down
in this worker at once; ``health.passive_errors`` connect timeouts, resets
or closes before any response byte in a row do too. Errors on a reused
pooled connection do not count (keep-alive races): the Cluster does not ask.

Panic (Envoy's): when some but fewer than ``health.panic_threshold``
percent of the weight of the hosts not in ``maint`` is healthy, health is
ignored and traffic spreads over all of them rather than crushing the few
survivors. With none healthy there is no host to choose."""

from __future__ import annotations

from typing import Iterable

from .outcome import PASSIVE_COUNTED, ErrorKind


def passive_verdict(failures: int, error: ErrorKind, limit: int) -> tuple[int, str | None]:
    """A host's errors in a row after ``error``, and why it is down (None:
    not down). ``limit``: health.passive_errors."""
    if error is ErrorKind.CONNECT_REFUSED:
        return failures, "connect refused"
    if error not in PASSIVE_COUNTED:
        return failures, None
    failures += 1
    if failures >= limit:
        return failures, f"{failures} errors in a row, the last {error.value}"
    return failures, None


def panic_weights(hosts: Iterable[tuple[int, str, str]]) -> tuple[int, int]:
    """The healthy weight and the whole weight of the hosts that count for
    panic, given each host's (weight, admin state, health)."""
    total = healthy = 0
    for weight, state, health in hosts:
        if state != "maint" and weight > 0:
            total += weight
            if health != "down":
                healthy += weight
    return healthy, total


def in_panic(healthy: int, total: int, threshold: float) -> bool:
    """Some, but less than ``threshold`` percent, of the weight is healthy."""
    return 0 < healthy < total * threshold / 100
