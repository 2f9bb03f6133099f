"""Circuit breakers in the control process: the authoritative breaker of each
backend (dataplane/breaker/), fed with every worker's outcomes; its phase
and the half-open trial permits reach the workers in the snapshots.

- Calls arrive with the workers' periodic reports, already judged (a
  failure, slow, or neither: one byte each, counted in C here, so that the
  control process spends no Python per request); a worker's own trip (``tripped``)
  arrives at once and opens the breaker here too, within the ejection cap.
  A trip refused by the cap is republished, so that the worker that opened
  its own view closes it again.
- Open for its time, then half_open: the ``half_open_calls`` permits are
  leased to one worker (the next live one each time). A worker reports each
  trial's start and verdict at once. All pass: closed; any fails: open again.
- A lease unused for ``LEASE`` seconds moves on, in two steps so that no
  worker can start a trial on a permit that has already moved: the permits
  are revoked, and given to the next worker only once the holder has
  acknowledged that snapshot without having started a trial.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

import structlog

from ..breaker.machine import Breaker, Phase, BreakerTransition
from ..breaker.policy import may_eject, rules_of
from ..channel.messages import BackendState, Trial, Tripped
from ..config import Config, backend_key
from .state import State, name_of

log = structlog.get_logger("l7lb.breaker")
TICK = 0.05
LEASE = 1.0          # seconds a half-open permit may stay unused in one worker


@dataclass
class Lease:
    """Who may send the trials of one half-open breaker. Each grant has its own
    number: a worker counts the trials it started under it, so a snapshot
    that crosses a trial's start cannot hand the same permit out twice."""
    number: int = 0
    allowed: int = 0                 # trials under this grant (a void one is given back)
    holder: int | None = None
    since: float = 0.0
    started: int = 0                 # trials the holder has started
    revoked_from: int | None = None  # moving on: waiting for this slot's ack...
    revoked_at: int = 0              # ...of this snapshot version


class BreakerBoard:
    def __init__(self, config: Config, state: State,
                 live_slots: Callable[[], list[int]], trial_timeout: float) -> None:
        self.settings = {name: config.group(name).breaker for name in config.group_names()}
        self.rules = {name: rules_of(s) for name, s in self.settings.items()}
        self.state = state
        self.live_slots = live_slots
        self.trial_timeout = trial_timeout
        self.breakers: dict[str, Breaker] = {}
        self.groups: dict[str, str] = {}         # backend key -> its group
        self.leases: dict[str, Lease] = {}
        self.trips: dict[str, int] = {}          # per backend, since the start
        self.refused: dict[str, int] = {}        # trips the ejection cap refused
        self.grants = 0                          # lease numbers handed out so far

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.state.on_publish(lambda snapshot: self._sync(snapshot.backends))
        self._sync(self.state.backends)
        self._tick(loop)

    def _sync(self, backends: list[BackendState]) -> None:
        names = {name_of(b): b.cluster for b in backends}
        for name in names.keys() - set(self.breakers):
            self.breakers[name] = Breaker(self.rules[names[name]])
            self.groups[name] = names[name]
        for gone in set(self.breakers) - names.keys():
            del self.breakers[gone], self.groups[gone]
            self.leases.pop(gone, None)

    # -- evidence ------------------------------------------------------------
    def calls(self, marks: dict[str, bytes]) -> None:
        """A worker's calls since its last report, judged by the worker (one
        mark per call, in order), counted in each closed breaker's window."""
        for name, batch in marks.items():
            breaker = self.breakers.get(name)
            reason = breaker.record_many(batch) if breaker is not None else None
            if reason is not None:
                self._trip(name, reason)

    def tripped(self, message: Tripped) -> None:
        name = backend_key(message.cluster, message.backend)
        breaker = self.breakers.get(name)
        if breaker is None:
            return
        if breaker.phase is Phase.CLOSED:
            self._trip(name, f"worker {message.slot}: {message.reason}")
        self._publish(force=True)     # the worker's own view follows this one

    def trial(self, message: Trial) -> None:
        name = backend_key(message.cluster, message.backend)
        breaker, lease = self.breakers.get(name), self.leases.get(name)
        if breaker is None or lease is None or breaker.phase is not Phase.HALF_OPEN:
            return
        if message.result == "started":
            lease.started += 1
            lease.since = time.monotonic()
            return
        if message.result == "void":       # the permit comes back
            lease.started -= 1
            lease.allowed += 1
            self._publish()
            return
        breaker.trial(time.monotonic(), message.result == "passed")
        if breaker.phase is not Phase.HALF_OPEN:
            self._moved(name, breaker.history[-1])
            self._publish()

    def acked(self, slot: int, version: int) -> None:
        """A worker applied a snapshot: a revoked lease may move on."""
        for name, lease in self.leases.items():
            if lease.revoked_from == slot and version >= lease.revoked_at:
                lease.revoked_from = None
                if not lease.started:
                    self._lease(name, lease, time.monotonic())
                    self._publish()

    # -- decisions -----------------------------------------------------------
    def _trip(self, name: str, reason: str) -> None:
        if not self._may_eject(name):
            self.refused[name] = self.refused.get(name, 0) + 1
            if self.refused[name] == 1 or self.refused[name] % 100 == 0:
                log.warning("breaker would trip, but max_ejection_percent is reached",
                            backend=name, reason=reason, refused=self.refused[name])
            return
        breaker = self.breakers[name]
        breaker.open(time.monotonic(), reason)
        self.trips[name] = self.trips.get(name, 0) + 1
        self._moved(name, breaker.history[-1])
        self._publish()

    def _may_eject(self, name: str) -> bool:
        target = self.state.find(name)
        if target is None:
            return False
        members = ((b.weight, self.breakers[name_of(b)].phase is not Phase.CLOSED)
                   for b in self.state.backends if b.cluster == target.cluster
                   and b.state != "maint")
        return may_eject(target.weight, members,
                         self.settings[target.cluster].max_ejection_percent)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        changed = False
        for name, breaker in self.breakers.items():
            if breaker.poll(now):
                self._moved(name, breaker.history[-1])
                self.leases[name] = lease = Lease()
                self._lease(name, lease, now)
                changed = True
            elif breaker.phase is Phase.HALF_OPEN:
                changed |= self._expire(name, now)
        if changed:
            self._publish()
        loop.call_later(TICK, self._tick, loop)

    def _lease(self, name: str, lease: Lease, now: float) -> None:
        """The permits to the next live worker."""
        live = sorted(self.live_slots())
        if not live:
            return
        after = [s for s in live if lease.holder is None or s > lease.holder]
        lease.holder = (after or live)[0]
        self.grants += 1
        lease.number = self.grants
        lease.allowed = self.breakers[name].rules.trial_calls
        lease.since, lease.started = now, 0

    def _expire(self, name: str, now: float) -> bool:
        """A lease unused for LEASE moves on; a trial with no verdict within
        ``trial_timeout`` (its worker died, say) counts as failed."""
        lease = self.leases.get(name)
        if lease is None or lease.revoked_from is not None:
            return False
        if lease.holder is None:             # no live worker at the time
            self._lease(name, lease, now)
            return lease.holder is not None
        if lease.started:
            if now - lease.since < self.trial_timeout:
                return False
            self.breakers[name].trial(now, False)
            self._moved(name, self.breakers[name].history[-1])
            return True
        if now - lease.since < LEASE:
            return False
        lease.revoked_from, lease.revoked_at = lease.holder, self.state.version + 1
        return True

    def force(self, name: str, phase: Phase) -> None:
        """``lbctl backend set NAME breaker closed|open``."""
        self.breakers[name].force(time.monotonic(), phase, "set by lbctl")
        self.leases.pop(name, None)
        self._moved(name, self.breakers[name].history[-1])
        self._publish()

    def _moved(self, name: str, move: BreakerTransition) -> None:
        if move.new is not Phase.HALF_OPEN:
            self.leases.pop(name, None)
        log.info("breaker", backend=name, old=move.old.value, new=move.new.value,
                 reason=move.reason)

    def _permits(self, name: str) -> tuple[int, dict[int, int]]:
        """(grant number, {worker slot: trials allowed under it})."""
        lease = self.leases.get(name)
        if lease is None or lease.holder is None or lease.revoked_from is not None:
            return 0, {}
        return lease.number, {lease.holder: lease.allowed}

    def _publish(self, force: bool = False) -> None:
        def fields(backend: BackendState) -> dict[str, Any] | None:
            name = name_of(backend)
            breaker = self.breakers.get(name)
            if breaker is None:
                return None
            number, permits = self._permits(name)
            return {"breaker": breaker.phase.value, "lease": number, "permits": permits}
        self.state.revise(fields, force)

    def enabled(self, name: str) -> bool:
        return self.settings[self.groups[name]].enabled

    # -- what lbctl and the metrics show ---------------------------------------
    def phase(self, name: str) -> str:
        """``closed``, ``open`` or ``half_open``; closed when off or unknown."""
        breaker = self.breakers.get(name)
        if breaker is None or not self.enabled(name):
            return Phase.CLOSED.value
        return breaker.phase.value

    def label(self, name: str) -> str | None:
        """``closed``, ``open 3.2s`` (time left), ``half_open 0/1`` (trials started)."""
        breaker = self.breakers.get(name)
        if breaker is None or not self.enabled(name):
            return None
        if breaker.phase is Phase.OPEN:
            left = breaker.until - time.monotonic()
            return "open" if left == float("inf") else f"open {max(0.0, left):.1f}s"
        if breaker.phase is Phase.HALF_OPEN:
            lease = self.leases.get(name)
            return f"half_open {lease.started if lease else 0}/{breaker.rules.trial_calls}"
        return "closed"

    def describe(self, name: str) -> dict[str, Any] | None:
        breaker = self.breakers.get(name)
        if breaker is None:
            return None
        now, wall = time.monotonic(), time.time()
        window, lease = breaker.window, self.leases.get(name)
        open_left = breaker.until - now if breaker.phase is Phase.OPEN else None
        return {
            "name": name, "breaker": breaker.phase.value, "label": self.label(name),
            "open_left_s": None if open_left is None or open_left == float("inf")
            else round(max(0.0, open_left), 3),
            "next_open_s": breaker.open_time() if breaker.trips else breaker.rules.open_for,
            "trips_total": self.trips.get(name, 0), "trips_in_a_row": breaker.trips,
            "refused_by_ejection_cap": self.refused.get(name, 0),
            "window": {"calls": window.calls, "failures": window.failures,
                       "slow": window.slow, "failures_in_a_row": window.in_a_row},
            "half_open": None if lease is None else {
                "worker": lease.holder, "trials_started": lease.started,
                "trials_passed": breaker.passed, "trials": breaker.rules.trial_calls},
            "transitions": [{"at": round(wall - (now - t.at), 3), "from": t.old.value,
                             "to": t.new.value, "reason": t.reason} for t in breaker.history]}
