"""What an upgrade carries from one control process to the next (handover/
carried.py): ``carry`` packs it in the giver, ``adopt`` applies it in the
taker before its workers start, so that they take their first requests with
the backend set, health and breakers of the process they replace."""

from __future__ import annotations

import math
import os
import time

import msgspec

from .. import __version__
from ..breaker.machine import Phase
from ..channel.messages import BackendState
from ..config import Config
from ..handover.carried import BreakerCarry, Carried, HostCarry
from ..health.verdict import Health
from ..tls.tickets import split_keys
from .state import name_of, states_of
from .view import ControlView


def carry(control: ControlView, slots: list[int], metrics: bool) -> Carried:
    health = {name: HostCarry(host.state.value, host.since, host.passing, host.timeouts,
                              list(host.detector.intervals), host.detector.last_probe,
                              host.detector.last_seen)
              for name, host in control.health.hosts.items()}
    breakers = {name: BreakerCarry(b.phase.value, b.trips, b.until if math.isfinite(b.until)
                                   else -1.0)
                for name, b in control.breakers.breakers.items() if b.phase is not Phase.CLOSED}
    settings = control.config.balancer
    return Carried(__version__, os.getpid(), f"{settings.bind}:{settings.port}", slots, metrics,
                   control.state.backends, file_keys(control.config), health, breakers,
                   split_keys(control.state.tickets),
                   control.fleet.member.lease if control.fleet is not None else 0,
                   {name: dict(a.tunables) for name, a in control.congestion.bpf.loaded.items()})


def file_keys(config: Config) -> list[str]:
    return sorted(name_of(s) for s in states_of(config))


def backends_to_keep(config: Config, carried: Carried, in_fleet: bool) -> list[BackendState]:
    """The set in force before, if this file names the same backends as the
    giver's did (or etcd holds the set); otherwise this file's, each backend
    known before keeping its admin state, health and breaker, as a reload."""
    groups = set(config.group_names())
    known = [_fresh_lease(b) for b in carried.backends if b.cluster in groups]
    if in_fleet or file_keys(config) == sorted(carried.file_backends):
        return known
    return states_of(config, known)


def _fresh_lease(backend: BackendState) -> BackendState:
    """Half-open permits name the giver's workers: none here; half-open is
    open again until this process's breaker board grants new ones."""
    breaker = "open" if backend.breaker == "half_open" else backend.breaker
    return msgspec.structs.replace(backend, breaker=breaker, lease=0, permits={})


def adopt(control: ControlView, carried: Carried) -> None:
    """Before the workers start (the fleet's lease before the fleet joins)."""
    state = control.state
    if carried.tickets and control.tls.rotation is not None:
        control.tls.rotation.resume(carried.tickets)
    state.publish(backends_to_keep(control.config, carried, control.fleet is not None))
    now = time.monotonic()
    for name, judged in carried.health.items():
        host = control.health.hosts.get(name)
        if host is not None:
            host.resume(Health(judged.state), judged.since, judged.passing, judged.timeouts)
            host.detector.resume(judged.intervals, judged.last_probe, judged.last_seen)
    for name, kept in carried.breakers.items():
        breaker = control.breakers.breakers.get(name)
        if breaker is not None:
            breaker.resume(now, Phase(kept.phase), kept.trips,
                           math.inf if kept.until < 0 else kept.until)
    if control.fleet is not None:
        control.fleet.member.lease = carried.fleet_lease
    control.congestion.bpf.tunables.update(carried.tunables)   # once it owns them
