"""The fleet as one member sees it, without I/O: the live members (what etcd
holds under members/) and the observations they published (health/), and
from those, who probes which backend and the fleet's verdict on it.

The rule (docs/fleet.md): a backend is down fleet-wide when more than half of
its live probers say so. With two probers that is both: one prober's own
trouble reaching a backend (its network path, its host) does not take the
backend from every balancer. A prober's own evidence, like every member's
passive signals, still acts on that member at once (control/fleet.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from .shards import probers


class Observation(NamedTuple):
    state: str            # a prober's health state of the backend: up, down, ...
    phi: float | None
    reason: str           # why it is in that state
    at: float             # wall-clock time it was published


class Verdict(NamedTuple):
    down: bool
    reason: str


class FleetView:
    def __init__(self, me: str, replicas: int) -> None:
        self.me = me
        self.replicas = replicas
        self.members: set[str] = set()
        self.observations: dict[str, dict[str, Observation]] = {}
        self._probers: dict[str, list[str]] = {}     # per backend, until members change

    # -- what etcd says --------------------------------------------------------
    def set_members(self, names: Iterable[str]) -> None:
        self.members = set(names)
        self._probers.clear()

    def join(self, name: str) -> None:
        self.members.add(name)
        self._probers.clear()

    def leave(self, name: str) -> None:
        self.members.discard(name)
        self._probers.clear()

    def observe(self, backend: str, member: str, observation: Observation | None) -> None:
        """A member's observation of a backend; None when its key is gone."""
        seen = self.observations.setdefault(backend, {})
        if observation is None:
            seen.pop(member, None)
        else:
            seen[member] = observation

    def clear_observations(self) -> None:
        self.observations.clear()

    # -- what follows ----------------------------------------------------------
    def probers(self, backend: str) -> list[str]:
        chosen = self._probers.get(backend)
        if chosen is None:
            chosen = self._probers[backend] = probers(backend, self.members, self.replicas)
        return chosen

    def assigned(self, backends: Iterable[str]) -> set[str]:
        """The backends this member probes."""
        return {b for b in backends if self.me in self.probers(b)}

    def verdict(self, backend: str) -> Verdict | None:
        """The fleet's verdict on a backend; None while none of its live
        probers has published an observation (no opinion)."""
        chosen = self.probers(backend)
        seen = self.observations.get(backend, {})
        heard = {m: seen[m] for m in chosen if m in seen}
        if not heard:
            return None
        down = sorted(m for m, o in heard.items() if o.state == "down")
        if len(down) * 2 > len(chosen):
            causes = "; ".join(f"{m}: {heard[m].reason}" for m in down)
            return Verdict(True, f"{len(down)} of {len(chosen)} probers say down ({causes})")
        return Verdict(False, f"{len(chosen) - len(down)} of {len(chosen)} probers "
                              "do not say down")

    def describe(self, backends: Iterable[str]) -> list[dict[str, Any]]:
        """Per backend: its probers and every member's observation of it."""
        rows = []
        for backend in backends:
            verdict = self.verdict(backend)
            rows.append({
                "backend": backend, "probers": self.probers(backend),
                "verdict": None if verdict is None else ("down" if verdict.down else "up"),
                "observations": {m: o._asdict() for m, o in
                                 sorted(self.observations.get(backend, {}).items())}})
        return rows
