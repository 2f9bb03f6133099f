"""The control process's metrics (docs/metrics.md): figures gathered at each
scrape from what it already holds (the workers' counters and outcomes,
health, breakers, the state), served on ``metrics.listen`` with /healthz,
/ready and, unless ``metrics.dashboard`` is off, the dashboard
(docs/dashboard.md) at / and /dashboard.json (dataplane/metrics/)."""

from __future__ import annotations

import socket
from typing import Callable, Iterator

import msgspec
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from .. import __version__
from ..metrics import page
from ..metrics.endpoint import METRICS_TYPE, MetricsEndpoint, Page
from ..metrics.families import BackendRow, Figures, families, in_service
from .dashboard import Dashboard
from .state import name_of
from .view import ControlView

log = structlog.get_logger("l7lb.control")


class _Collector:
    def __init__(self, figures: Callable[[], Figures]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        yield from families(self.figures())


class Metrics:
    def __init__(self, control: ControlView) -> None:
        self.control = control
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self.figures))
        pages: dict[str, Page] = {"/metrics": self._metrics, "/healthz": self._healthz,
                                  "/ready": self._ready}
        self.dashboard = Dashboard(control) if control.config.metrics.dashboard else None
        if self.dashboard is not None:
            pages.update({"/": self._page, "/dashboard.json": self._document,
                          "/dashboard.js": lambda: (200, "text/javascript; charset=utf-8",
                                                    page.asset("dashboard.js")),
                          "/dashboard.css": lambda: (200, "text/css; charset=utf-8",
                                                     page.asset("dashboard.css"))})
        self.endpoint = MetricsEndpoint(pages)

    async def start(self, handed: socket.socket | None = None) -> bool:
        """Listen on metrics.listen (on ``handed``, an upgrade's, if it is bound
        there); False (logged) when that fails."""
        listen = self.control.config.metrics.listen
        if listen is None:
            return False              # made only when metrics.listen is set
        host, _, port = listen.rpartition(":")
        try:
            if handed is not None and handed.getsockname()[1] != int(port):
                handed.close()
                handed = None
            await self.endpoint.start(host.strip("[]"), int(port), handed)
        except OSError as exc:
            log.error("cannot open the metrics listener", address=listen,
                      error=exc.strerror or str(exc))
            return False
        if self.dashboard is not None:
            self.dashboard.start()
        return True

    def close(self) -> None:
        self.endpoint.close()
        if self.dashboard is not None:
            self.dashboard.close()

    def listening(self) -> socket.socket | None:
        return self.endpoint.listening()

    # -- pages ---------------------------------------------------------------
    def _metrics(self) -> tuple[int, str, bytes]:
        return 200, METRICS_TYPE, generate_latest(self.registry)

    def _page(self) -> tuple[int, str, bytes]:
        assert self.dashboard is not None
        return 200, "text/html; charset=utf-8", page.render(self.dashboard.document())

    def _document(self) -> tuple[int, str, bytes]:
        assert self.dashboard is not None
        return 200, "application/json", msgspec.json.encode(self.dashboard.document())

    def _healthz(self) -> tuple[int, str, bytes]:
        return 200, "text/plain", b"ok\n"

    def _ready(self) -> tuple[int, str, bytes]:
        control = self.control
        workers = len(control.supervisor.live()) if control.supervisor else 0
        healthy = sum(1 for b in control.state.backends
                      if in_service(b.state, b.health, control.breakers.phase(name_of(b))))
        ready = workers > 0 and healthy > 0
        text = f"{'ready' if ready else 'not ready'}: {workers} workers, {healthy} healthy backends\n"
        return (200 if ready else 503), "text/plain", text.encode()

    # -- figures -------------------------------------------------------------
    def figures(self) -> Figures:
        control = self.control
        reports = control.reports()
        pools = control.tally.pool_totals(reports)
        backends = []
        for state in control.state.backends:
            key = name_of(state)
            tally, pool = control.tally.backend(key), pools.get(key, {})
            backends.append(BackendRow(
                state.cluster, f"{state.host}:{state.port}", state.state, state.health,
                control.health.phi(key), control.breakers.phase(key), state.weight,
                tally.requests, tally.statuses, tally.connect_errors, tally.response_errors,
                tally.bytes_in, tally.bytes_out, pool.get("opened", 0), pool.get("reused", 0),
                pool.get("retries", 0), pool.get("over_max_connections", 0),
                pool.get("over_max_pending", 0), pool.get("over_max_requests", 0),
                pool.get("waiting", 0),
                pool.get("busy", 0), pool.get("idle", 0),
                tally.durations, tally.duration_ms / 1000, state.cc))
        return Figures(__version__, backends, sum(r.open for r in reports),
                       sum(r.connections for r in reports), sum(r.rejected for r in reports),
                       sum(r.refused for r in reports), control.supervisor.restarts if control.supervisor else 0,
                       control.reloads, sum(r.tls[0] for r in reports),
                       sum(r.tls[1] for r in reports), sum(r.limited[0] for r in reports),
                       sum(r.limited[1] for r in reports),
                       *(sum(r.http2[at] for r in reports) for at in range(3)))
