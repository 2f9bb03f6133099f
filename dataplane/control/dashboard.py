"""The dashboard's data (docs/dashboard.md): one JSON document gathered from
what the control process already holds (the admin commands' replies, health
and breaker transitions, the workers' tallies), and the short history it
samples once a second. Served on metrics.listen by control/metrics.py, at
``/dashboard.json`` and, rendered, at ``/``."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from .. import __version__
from ..metrics.history import History, Totals
from ..upstream.tally import BOUNDS_MS
from . import read_commands
from .admin import AdminError
from .state import name_of
from .view import ControlView

EVENTS = 30           # health transitions and breaker changes shown, newest first
SCHEMA = 1            # the document's version: fields are added, never renamed


class Dashboard:
    def __init__(self, control: ControlView) -> None:
        self.control = control
        self.history = History(BOUNDS_MS)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._sampling())

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _sampling(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(1.0)

    def sample(self) -> None:
        totals = {}
        for state in self.control.state.backends:
            key = name_of(state)
            tally = self.control.tally.backend(key)
            totals[key] = Totals(tally.requests, tally.statuses[5] + tally.errors,
                                 tuple(tally.durations))
        self.history.sample(time.monotonic(), time.time(), totals)

    def document(self) -> dict[str, Any]:
        control = self.control
        status = read_commands.status(control, {})
        return {
            "schema": SCHEMA, "at": round(time.time(), 3),
            "process": {"version": __version__, "pid": os.getpid(),
                        "uptime_s": status["uptime_s"], "mode": status["mode"],
                        "listeners": status["listeners"],
                        "workers": len(status["workers"]), "reloads": control.reloads,
                        "worker_restarts": control.supervisor.restarts if control.supervisor
                        else 0, "state_version": status["state_version"]},
            "clusters": self._clusters(),
            "history": {"span_s": self.history.span, "backends": self.history.export()},
            "events": self._events(),
            "routes": read_commands.routes(control, {}),
            "fleet": self._fleet()}

    def _clusters(self) -> list[dict[str, Any]]:
        control = self.control
        threshold = control.config.balancer.failure_threshold
        clusters: dict[str, list[dict[str, Any]]] = {}
        for row, state in zip(read_commands.backends(control, {}), control.state.backends):
            key = name_of(state)
            rate, errors = self.history.recent(key)
            clusters.setdefault(row["cluster"], []).append({
                "key": key, "name": row["name"], "health": row["health"], "state": row["state"],
                "phi": row["phi"], "phi_threshold": threshold, "breaker": row["breaker"],
                "weight": row["weight"], "cc": row["cc"],
                # HTTP/2 upstreams carry requests as streams; else each busy connection is one.
                "in_flight": row["streams"] or row["active"], "rate": rate,
                "error_share": errors, "p50_ms": row["p50_ms"], "p99_ms": row["p99_ms"],
                "requests": row["requests"], "errors": row["errors"]})
        return [{"name": name, "backends": rows} for name, rows in clusters.items()]

    def _events(self) -> list[dict[str, Any]]:
        control = self.control
        events = []
        for state in control.state.backends:
            key = name_of(state)
            name = f"{state.host}:{state.port}"
            for kind, described in (("health", control.health.describe(key)),
                                    ("breaker", control.breakers.describe(key))):
                for change in (described or {}).get("transitions", ()):
                    events.append({"at": change["at"], "kind": kind, "cluster": state.cluster,
                                   "backend": name, "from": change["from"],
                                   "to": change["to"], "reason": change["reason"]})
        events.sort(key=lambda event: event["at"], reverse=True)
        return events[:EVENTS]

    def _fleet(self) -> dict[str, Any] | None:
        try:
            described = read_commands.fleet(self.control, {})
        except AdminError:
            return None                  # standalone
        return {"member": described["member"], "mode": described["mode"],
                "members": described["members"], "probing": described["probing"]}
