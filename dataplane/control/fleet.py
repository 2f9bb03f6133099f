"""The control process's side of a fleet (dataplane/fleet/, docs/fleet.md):
which backends this member probes, the fleet's verdicts on the others, what
it publishes as a prober, and the backend set kept in etcd.

Fleet-wide per backend: its existence in a group, weight, admin state and the
congestion control asked for. Local to each member: health as it judges it,
breakers, ``client_side``, the algorithm in effect (what its kernel has).
Degraded (etcd unreachable for ``lease_ttl``): every backend is probed here
and only this member's own evidence counts; the backend set stays as it was,
and changes to it are refused until etcd is back.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import msgspec
import structlog

from ..channel.messages import BackendState
from ..config import Config
from ..fleet.etcd import Etcd, EtcdError
from ..fleet.member import Conflict, FleetMember, Hooks
from ..fleet.view import Observation
from .admin import AdminError
from .congestion import Congestion
from .health import HealthMonitor
from .state import State, name_of

log = structlog.get_logger("l7lb.fleet")

REFRESH = 5.0     # seconds: an unchanged observation is published again, with its phi


def shared_fields(backend: BackendState) -> dict[str, Any]:
    """What the fleet keeps of a backend (the value under backends/)."""
    return {"weight": backend.weight, "state": backend.state,
            "congestion_control": backend.cc_wanted}


class FleetLink:
    def __init__(self, config: Config, state: State, health: HealthMonitor,
                 congestion: Congestion) -> None:
        settings = config.fleet
        if settings is None:
            raise ValueError("a fleet link needs the fleet section")
        self.settings = settings
        self.config, self.state, self.health, self.congestion = config, state, health, congestion
        self.name = settings.name or f"{socket.gethostname()}:{config.balancer.port}"
        etcd = Etcd(settings.etcd, settings.timeout, settings.user, settings.password,
                    settings.tls)
        self.member = FleetMember(settings, self.name, etcd, Hooks(
            self._view_changed, self._backends_changed, self._mode_changed, self._seed))
        self.assigned: set[str] = set()      # what this member probes for the fleet
        self.strangers: set[str] = set()     # groups in etcd this file does not have
        health.listeners.append(self._own_evidence)

    @property
    def mode(self) -> str:
        return self.member.mode

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.member.start(loop)
        loop.call_later(REFRESH, self._refresh)

    async def stop(self, leave: bool = True) -> None:
        """``leave``: False when a new process took over this member's lease."""
        await self.member.stop(leave)

    # -- health ------------------------------------------------------------------
    def _view_changed(self, observed: set[str] | None = None) -> None:
        """Members changed (None: shards move; every verdict is taken again), or
        the observations of some backends did."""
        if self.mode != "ok":
            return
        names = [name_of(s) for s in self.state.backends]
        view = self.member.view
        if observed is None:
            assigned = view.assigned(names)
            for name in self.assigned - assigned:
                self.member.publish(name, None)
            for name in assigned - self.assigned:
                self._own_evidence(name, force=True)
            self.assigned = assigned
            self.health.assign(assigned)
        for name in names if observed is None else observed & set(names):
            verdict = view.verdict(name)
            if verdict is None:
                self.health.fleet_verdict(name, False, "no prober has published yet")
            else:
                self.health.fleet_verdict(name, verdict.down, verdict.reason)

    def _mode_changed(self, mode: str) -> None:
        if mode == "degraded":
            self.assigned = set()
            self.health.assign(None)
            for backend in self.state.backends:
                self.health.fleet_verdict(name_of(backend), False,
                                          "fleet degraded: own evidence only")

    def _own_evidence(self, name: str, force: bool = False) -> None:
        """Publish this member's view of a backend it probes."""
        host = self.health.hosts.get(name)
        if host is None or not (force or name in self.assigned):
            return
        reason = host.transitions[-1].reason if host.transitions else ""
        self.member.publish(name, Observation(host.state.value, self.health.phi(name), reason,
                                              round(time.time(), 3)))

    def _refresh(self) -> None:
        for name in self.assigned:
            self._own_evidence(name)
        self.loop.call_later(REFRESH, self._refresh)

    # -- the backend set -----------------------------------------------------------
    def _seed(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(s.cluster, f"{s.host}:{s.port}"): shared_fields(s) for s in self.state.backends}

    def _backends_changed(self) -> None:
        """Make the state's backends the fleet's set, keeping local fields."""
        fleet = self.member.backends
        groups = set(self.config.group_names())
        for group in {g for g, _ in fleet} - groups - self.strangers:
            self.strangers.add(group)
            log.warning("fleet: etcd has backends of a group this file lacks; not used here",
                        cluster=group)
        known = {(s.cluster, f"{s.host}:{s.port}"): s for s in self.state.backends}
        order = [k for k in known if k in fleet] + sorted(k for k in fleet if k not in known
                                                          and k[0] in groups)
        backends = [self._backend(key, fleet[key][0], known.get(key)) for key in order]
        if backends != self.state.backends:
            self.state.publish(backends)
            self._view_changed()

    def _backend(self, key: tuple[str, str], fields: dict[str, Any],
                 old: BackendState | None) -> BackendState:
        cc = fields["congestion_control"]
        shared = dict(weight=fields["weight"], state=fields["state"], cc_wanted=cc,
                      cc=self.congestion.effective(cc))
        if old is not None:
            return msgspec.structs.replace(old, **shared)
        group, address = key
        host, _, port = address.rpartition(":")
        return BackendState(host.strip("[]"), int(port), cluster=group, **shared)

    async def change(self, before: BackendState | None, after: BackendState | None) -> None:
        """An lbctl change of one backend: the fleet-wide part through etcd (every
        member applies it from its watch, this one included), the rest here."""
        if self.mode != "ok":
            raise AdminError("fleet_unavailable",
                             f"etcd is unreachable ({self.member.error or 'not joined yet'}); "
                             "the fleet's backend set cannot change until it is back")
        which = after or before
        if which is None:
            return                           # nothing was, nothing is
        if before is None or after is None or shared_fields(before) != shared_fields(after):
            try:
                await self.member.change_backend(which.cluster, f"{which.host}:{which.port}",
                                                 None if after is None else shared_fields(after))
            except Conflict as exc:
                raise AdminError("conflict", str(exc)) from None
            except EtcdError as exc:
                raise AdminError("fleet_unavailable", f"etcd: {exc}") from None
        if after is not None and before is not None and after.client_side != before.client_side:
            current = self.state.find(name_of(after))
            self.state.publish([msgspec.structs.replace(s, client_side=after.client_side)
                                if s is current else s for s in self.state.backends])

    # -- what lbctl shows ------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        member, settings = self.member, self.settings
        rows = member.view.describe(name_of(s) for s in self.state.backends)
        for row in rows:
            host = self.health.hosts.get(row["backend"])
            known = self.state.find(row["backend"])
            row["here"] = {"health": known.health if known else None,
                           "own": host.state.value if host else None,
                           "probed": self.health.probes(row["backend"])}
        return {"member": self.name, "lease": f"{member.lease:x}" if member.lease else None,
                "mode": member.mode, "prefix": settings.prefix,
                "probe_replicas": settings.probe_replicas,
                "etcd": {"endpoint": member.etcd.endpoint, "reachable": member.mode == "ok",
                         "error": member.error or None},
                "members": sorted(member.view.members), "probing": sorted(self.assigned),
                "keys_written": member.writes, "backends": rows}
