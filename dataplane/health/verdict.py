"""One backend's health as the control process judges it, without I/O.

States (``Health``): ``unknown`` until the first probe answers (treated as up
so that a fresh start serves at once), ``up``, ``down``, ``slow_start``.

- A probe answered within ``timeout`` with an expected status is a heartbeat
  for the phi detector. An answer outside ``expect``, a refused or reset
  probe connection, or ``fall`` timed-out probes in a row: down at once.
- Phi above the threshold (the detector needs some history first): down.
- A worker's passive verdict (refused connects, ``passive_errors`` errors in
  a row): down.
- Down, then ``rise`` probes in a row answered: ``slow_start`` for
  ``slow_start`` seconds (effective weight from 10% to 100%, linear), then up;
  with ``slow_start`` 0 straight to up. Only down -> up ramps: a backend that
  starts with the balancer, or is added at runtime, takes its share at once.

Every transition is kept (the last ``HISTORY``) with its reason and phi.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import NamedTuple

from .phi import PhiDetector

HISTORY = 20
MIN_WEIGHT_PERCENT = 10


class Health(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"
    SLOW_START = "slow_start"


class Probe(NamedTuple):
    at: float           # when it ended (monotonic)
    ok: bool
    ms: float | None    # latency; None when it timed out
    detail: str         # "200", "refused", "timeout"...


class HealthTransition(NamedTuple):
    at: float
    old: Health
    new: Health
    reason: str
    phi: float


class HealthRules(NamedTuple):
    threshold: float = 8.0
    rise: int = 2
    fall: int = 3
    slow_start: float = 30.0


class HostHealth:
    def __init__(self, rules: HealthRules, detector: PhiDetector, now: float) -> None:
        self.rules = rules
        self.detector = detector
        self.state = Health.UNKNOWN
        self.since = now
        self.passing = 0           # probes answered in a row
        self.timeouts = 0          # probes timed out in a row
        self.probes: deque[Probe] = deque(maxlen=HISTORY)
        self.transitions: deque[HealthTransition] = deque(maxlen=HISTORY)
        # Probed by other members of a fleet, not here: no heartbeats to expect.
        self.following = False

    # -- evidence ----------------------------------------------------------
    def probe_passed(self, now: float, ms: float, detail: str) -> HealthTransition | None:
        self.detector.heartbeat(now)
        self.probes.append(Probe(now, True, ms, detail))
        self.passing += 1
        self.timeouts = 0
        if self.state is Health.UNKNOWN:
            return self._move(now, Health.UP, "first probe answered")
        if self.state is Health.DOWN and self.passing >= self.rules.rise:
            ramp = Health.SLOW_START if self.rules.slow_start > 0 else Health.UP
            return self._move(now, ramp, f"{self.passing} probes passed")
        return None

    def probe_failed(self, now: float, detail: str, ms: float | None) -> HealthTransition | None:
        """A definite failure: a status outside ``expect``, refused, reset."""
        self.probes.append(Probe(now, False, ms, detail))
        self.passing = self.timeouts = 0
        self.detector.interrupt()
        return self._down(now, f"probe failed: {detail}")

    def probe_timed_out(self, now: float) -> HealthTransition | None:
        self.probes.append(Probe(now, False, None, "timeout"))
        self.passing = 0
        self.timeouts += 1
        if self.timeouts >= self.rules.fall:
            return self._down(now, f"{self.timeouts} probes timed out")
        return None

    def passive_down(self, now: float, reason: str) -> HealthTransition | None:
        self.passing = 0
        self.detector.interrupt()
        return self._down(now, reason)

    def alive(self, now: float) -> None:
        """A request to it succeeded: a sign of life for the detector."""
        self.detector.alive(now)

    def check(self, now: float, paused: float) -> HealthTransition | None:
        """The periodic look: conviction by phi, the end of slow start."""
        if self.state is Health.DOWN:
            return None
        phi = 0.0 if self.following else self.detector.phi(now, paused)
        if phi > self.rules.threshold:
            return self._down(now, f"phi {phi:.1f} over {self.rules.threshold}")
        if self.state is Health.SLOW_START and now - self.since >= self.rules.slow_start:
            return self._move(now, Health.UP, "slow start over")
        return None

    def ramp(self, now: float, reason: str) -> HealthTransition | None:
        """Back from a fleet-wide down that this member did not see itself:
        slow start as after its own recovery."""
        if self.state is Health.DOWN or self.rules.slow_start <= 0:
            return None
        return self._move(now, Health.SLOW_START, reason)

    def resume(self, state: Health, since: float, passing: int, timeouts: int) -> None:
        """Continue the judgement another process made (an upgrade)."""
        self.state, self.since, self.passing, self.timeouts = state, since, passing, timeouts

    # -- what the workers get ----------------------------------------------
    def weight_percent(self, now: float) -> int:
        """Effective weight during slow start (Envoy's aggression 1.0)."""
        if self.state is not Health.SLOW_START:
            return 100
        ramp = int(100 * (now - self.since) / self.rules.slow_start)
        return max(MIN_WEIGHT_PERCENT, min(100, ramp))

    # -- moving --------------------------------------------------------------
    def _down(self, now: float, reason: str) -> HealthTransition | None:
        return None if self.state is Health.DOWN else self._move(now, Health.DOWN, reason)

    def _move(self, now: float, new: Health, reason: str) -> HealthTransition:
        transition = HealthTransition(now, self.state, new, reason, self.detector.phi(now))
        self.state, self.since = new, now
        self.transitions.append(transition)
        return transition
