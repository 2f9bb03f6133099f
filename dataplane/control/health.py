"""Health checking in the control process: the probes' results, the workers'
passive verdicts and successful requests go into each backend's HostHealth
(dataplane/health/); a change of state goes to every worker as a new
snapshot through State.publish, and is logged and counted.

In a fleet (control/fleet.py) it probes only the backends assigned to this
member (``assign``), plus any other it has seen fail itself until its own
probes see it back; the fleet's verdicts (``fleet_verdict``) take a backend
down here as well, and every change of its own evidence goes to the
``listeners`` (the prober publishes it).

A timer every ``TICK`` seconds lets phi convict silent backends, ends slow
starts, republishes slow-start weights as they grow, and feeds the pause
guard (the control process's own stalls excuse the silences they create).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Callable

import structlog

from ..channel.messages import BackendState
from ..config import Config
from ..health.pause import PauseGuard
from ..health.phi import PhiDetector
from ..health.verdict import Health, HostHealth, HealthRules, HealthTransition
from ..tls.contexts import backend_context
from ..upstream.pool import Tls
from .prober import ProbeSpec, Prober, Target
from .state import State, name_of

log = structlog.get_logger("l7lb.health")
TICK = 0.1


def probe_spec(config: Config, group: str) -> ProbeSpec:
    """How a group's backends are probed (its ``health`` section)."""
    health = config.group(group).health
    interval = health.interval or config.balancer.health_check_interval
    settings = config.balancer_of(group)
    http2 = settings.protocol != "http1"
    kind = health.type or ("tcp" if config.balancer.mode == "tcp" else "h2" if http2 else "http")
    fast = health.fast_interval if health.fast_interval is not None else min(interval, 1.0)
    tls = settings.backend_tls
    return ProbeSpec(kind, health.path, health.host, health.expect_ranges(), health.timeout,
                     interval, fast, settings.send_proxy,
                     Tls(backend_context(tls, settings.protocol), tls.sni)
                     if tls is not None else None, http2, health.grpc_service)


class HealthMonitor:
    def __init__(self, config: Config, state: State) -> None:
        self.config = config
        self.state = state
        threshold = config.balancer.failure_threshold
        self.rules = {name: HealthRules(threshold, h.rise, h.fall, h.slow_start)
                      for name in config.group_names() if (h := config.group(name).health)}
        self.hosts: dict[str, HostHealth] = {}
        self.groups: dict[str, str] = {}       # backend key -> its group
        self.marks: dict[str, float] = {}      # pause-guard total at each last sign of life
        self.transitions: Counter[str] = Counter()
        self.guard = PauseGuard(TICK)
        self.probers: dict[str, Prober] = {}   # one per group: each its own probe settings
        self._percent: dict[str, int] = {}     # slow-start weights last published
        self.assigned: set[str] | None = None  # None: every backend is probed here
        self.suspects: set[str] = set()        # not assigned, but failed here: probed
        self.fleet_down: dict[str, str] = {}   # down by the fleet's verdict: why
        self.listeners: list[Callable[[str], None]] = []

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.probers = {name: Prober(loop, probe_spec(self.config, name), self._probed)
                        for name in self.config.group_names()}
        self.state.on_publish(lambda snapshot: self._sync(snapshot.backends))
        self._sync(self.state.backends)
        self._tick(loop)

    def stop(self) -> None:
        for prober in self.probers.values():
            prober.stop()

    # -- the backend set ---------------------------------------------------
    def _sync(self, backends: list[BackendState]) -> None:
        """Probe what the state names; forget what it no longer does."""
        now = time.monotonic()
        names = set()
        for backend in backends:
            name = name_of(backend)
            names.add(name)
            group = backend.cluster
            if name not in self.hosts:
                settings = self.config.group(group).health
                self.hosts[name] = HostHealth(self.rules[group], PhiDetector(
                    settings.window, settings.min_std_deviation, settings.acceptable_pause), now)
                self.marks[name] = self.guard.total
                self.groups[name] = group
            probed = self.probes(name)
            self.hosts[name].following = not probed
            if probed:
                self.probers[group].watch(Target(name, backend.host, backend.port, backend.cc,
                                                 backend.state == "maint"))
            else:
                self.probers[group].forget(name)
        for gone in set(self.hosts) - names:
            del self.hosts[gone], self.marks[gone]
            self._percent.pop(gone, None)
            self.fleet_down.pop(gone, None)
            self.suspects.discard(gone)
            self.probers[self.groups.pop(gone)].forget(gone)

    def probes(self, name: str) -> bool:
        """Is ``name`` probed by this balancer?"""
        return self.assigned is None or name in self.assigned or name in self.suspects

    def assign(self, names: set[str] | None) -> None:
        """Probe these backends (None: all of them, as a standalone balancer)."""
        if names != self.assigned:
            self.assigned = names
            self._sync(self.state.backends)

    def fleet_verdict(self, name: str, down: bool, reason: str) -> None:
        """The fleet's verdict on a backend: down here too, or no longer."""
        host = self.hosts.get(name)
        if host is None or down == (name in self.fleet_down):
            return
        now = time.monotonic()
        self.transitions[name] += 1
        if down:
            self.fleet_down[name] = reason
        else:
            del self.fleet_down[name]
            host.ramp(now, f"fleet: {reason}")
        log.info("backend health", backend=name, fleet="down" if down else "up",
                 reason=reason, own=host.state.value)
        self._publish()

    # -- evidence ------------------------------------------------------------
    def _probed(self, name: str, outcome: str, ms: float | None, detail: str) -> None:
        host = self.hosts.get(name)
        if host is None:
            return
        now = time.monotonic()
        if outcome in ("pass", "late"):
            self.marks[name] = self.guard.total
            self._apply(name, host.probe_passed(now, ms or 0.0, detail))   # a pass is timed
        elif outcome == "timeout":
            self._apply(name, host.probe_timed_out(now))
        else:
            self._apply(name, host.probe_failed(now, detail, ms))

    def passive_down(self, name: str, reason: str) -> None:
        host = self.hosts.get(name)
        if host is None:
            return
        self._apply(name, host.passive_down(time.monotonic(), reason))
        if not self.probes(name):         # see it come back with our own probes
            self.suspects.add(name)
            self._sync(self.state.backends)

    def alive(self, name: str) -> None:
        host = self.hosts.get(name)
        if host is not None:
            host.alive(time.monotonic())
            self.marks[name] = self.guard.total

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        stall = self.guard.tick(now)
        if stall:
            log.warning("control process stalled; no backend is judged on it",
                        stall_s=round(stall, 3))
        for name, host in list(self.hosts.items()):
            self._apply(name, host.check(now, self.guard.since(self.marks[name])))
        self._republish_ramps(now)
        loop.call_later(TICK, self._tick, loop)

    # -- consequences --------------------------------------------------------
    def _apply(self, name: str, transition: HealthTransition | None) -> None:
        if transition is None:
            return
        self.transitions[name] += 1
        log.info("backend health", backend=name, old=transition.old.value,
                 new=transition.new.value, reason=transition.reason,
                 phi=round(transition.phi, 2))
        if name in self.suspects and transition.new is not Health.DOWN:
            self.suspects.discard(name)       # back by our own probes: follow again
            self._sync(self.state.backends)
        for listener in self.listeners:
            listener(name)
        self._publish()

    def _republish_ramps(self, now: float) -> None:
        """Slow-start weights reach the workers in steps of 10%."""
        if any(_step(host, now) != self._percent.get(name, 100)
               for name, host in self.hosts.items()):
            self._publish()

    def _publish(self) -> None:
        now = time.monotonic()

        def fields(backend: BackendState) -> dict[str, Any] | None:
            name = name_of(backend)
            host = self.hosts.get(name)
            if host is None:
                return None
            percent = self._percent[name] = _step(host, now)
            state = "down" if name in self.fleet_down else host.state.value
            return {"health": state, "weight_percent": percent}
        self.state.revise(fields)

    # -- what lbctl shows ----------------------------------------------------
    def phi(self, name: str) -> float | None:
        host = self.hosts.get(name)
        if host is None or not host.detector.ready:
            return None
        return round(host.detector.phi(time.monotonic(),
                                       self.guard.since(self.marks[name])), 3)

    def describe(self, name: str) -> dict[str, Any] | None:
        host = self.hosts.get(name)
        if host is None:
            return None
        now, wall = time.monotonic(), time.time()
        detector = host.detector
        return {
            "name": name, "health": "down" if name in self.fleet_down else host.state.value,
            "own_health": host.state.value, "phi": self.phi(name),
            "since": round(wall - (now - host.since), 3),
            "window": {"samples": len(detector.intervals),
                       "mean_ms": round(detector.mean() * 1000, 2),
                       "std_ms": round(detector.std() * 1000, 2)},
            "weight_percent": host.weight_percent(now),
            "transitions_total": self.transitions[name],
            "probed_here": self.probes(name), "fleet_down": self.fleet_down.get(name),
            "probes": [{"at": round(wall - (now - p.at), 3), "ok": p.ok, "ms": p.ms,
                        "detail": p.detail} for p in host.probes],
            "transitions": [{"at": round(wall - (now - t.at), 3), "from": t.old.value,
                             "to": t.new.value, "reason": t.reason, "phi": round(t.phi, 2)}
                            for t in host.transitions]}


def _step(host: HostHealth, now: float) -> int:
    """The effective weight in percent, in steps of 10 (each step is a snapshot)."""
    return host.weight_percent(now) // 10 * 10 if host.state is Health.SLOW_START else 100
