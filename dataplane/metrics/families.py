"""One scrape's metric families, from plain figures the control process
gathers (control/metrics.py), without I/O. Names follow Prometheus'
conventions and, where one exists, HAProxy's exporter (``haproxy_backend_``
becomes ``l7lb_backend_``); labels are ``cluster`` and ``backend`` only, so
their number is bounded by the configuration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, InfoMetricFamily, Metric)

# Seconds: the request duration histogram's upper bounds, fine below 10 ms
# where a proxy in front of fast backends spends most requests.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HEALTH_STATES = ("unknown", "up", "down", "slow_start")
BREAKER_STATES = ("closed", "open", "half_open")


def in_service(admin_state: str, health: str, breaker: str) -> bool:
    """A backend is up, as the metrics and /ready count it: admin state
    ``ready``, not down by health, its breaker not open. (A worker's own
    decision, ``Cluster.admits``, adds what only it knows: an address, a
    weight above 0, panic, trial permits.)"""
    return admin_state == "ready" and health != "down" and breaker != "open"


class BackendRow(NamedTuple):
    cluster: str
    backend: str                 # HOST:PORT
    admin_state: str             # ready | drain | maint
    health: str
    phi: float | None
    breaker: str                 # closed | open | half_open
    weight: int
    requests: int
    responses: list[int]         # by class: index 1..5 = 1xx..5xx
    connect_errors: int
    response_errors: int
    bytes_in: int
    bytes_out: int
    opened: int
    reused: int
    retries: int
    over_max_connections: int    # refused at breaker.max_connections (TCP mode too)
    over_max_pending: int
    over_max_requests: int
    queue: int
    active: int
    idle: int
    durations: list[int]         # per BUCKETS bound, then +Inf (not cumulative)
    duration_sum: float          # seconds
    cc: str                      # congestion control in effect ("" = kernel default)


class Figures(NamedTuple):
    version: str
    backends: list[BackendRow]
    sessions_current: int
    sessions_total: int
    request_errors: int
    refused: int
    worker_restarts: int
    reloads: int
    tls_handshakes: int
    tls_resumed: int
    limited_connections: int
    limited_requests: int
    http2_connections: int = 0
    http2_streams: int = 0
    http2_calmed: int = 0


def families(figures: Figures) -> Iterator[Metric]:
    yield InfoMetricFamily("l7lb_build", "The running l7lb", value={"version": figures.version})
    yield from _frontend(figures)
    yield from _backends(figures.backends)


_FRONTEND_COUNTERS = (   # (name, help, Figures field)
    ("l7lb_frontend_sessions", "Client connections accepted", "sessions_total"),
    ("l7lb_frontend_request_errors", "Requests refused before a backend (400, 408, 431...)",
     "request_errors"),
    ("l7lb_frontend_denied_connections",
     "Connections refused at accept (limits.connections, untrusted)", "refused"),
    ("l7lb_frontend_limited_connections",
     "Connections refused by limits.per_client_connections (HTTP: 429)", "limited_connections"),
    ("l7lb_frontend_limited_requests",
     "Requests (TCP mode: connections) refused by limits.per_client_rate", "limited_requests"),
    ("l7lb_frontend_tls_handshakes", "TLS handshakes completed", "tls_handshakes"),
    ("l7lb_frontend_tls_resumed", "TLS handshakes that resumed", "tls_resumed"),
    ("l7lb_frontend_http2_connections", "Client connections that spoke HTTP/2 (h2, h2c)",
     "http2_connections"),
    ("l7lb_frontend_http2_streams", "HTTP/2 streams (requests) clients opened", "http2_streams"),
    ("l7lb_frontend_http2_calmed",
     "HTTP/2 connections ended by GOAWAY for a flood, a rapid reset or a protocol error",
     "http2_calmed"),
    ("l7lb_worker_restarts", "Workers that died and were replaced", "worker_restarts"),
    ("l7lb_config_reloads", "Configuration reloads applied", "reloads"),
)


def _frontend(f: Figures) -> Iterator[Metric]:
    yield GaugeMetricFamily("l7lb_frontend_current_sessions",
                            "Client connections open now", value=f.sessions_current)
    for name, text, field in _FRONTEND_COUNTERS:
        yield CounterMetricFamily(name, text, value=getattr(f, field))


_COUNTERS = (   # (name, help, field)
    ("http_requests", "HTTP requests sent to the backend (TCP mode: connections)", "requests"),
    ("connection_errors", "Failed connects to the backend", "connect_errors"),
    ("response_errors", "Responses that failed (reset, timeout, invalid)", "response_errors"),
    ("bytes_in", "Request body bytes sent to the backend", "bytes_in"),
    ("bytes_out", "Response body bytes received from the backend", "bytes_out"),
    ("connection_attempts", "Connections opened to the backend", "opened"),
    ("connection_reuses", "Requests sent on a pooled connection", "reused"),
    ("retry_warnings", "Retries of requests that failed on the backend", "retries"),
    ("over_max_connections", "Requests (TCP mode: connections) refused at "
     "breaker.max_connections", "over_max_connections"),
    ("over_max_pending", "Requests refused at breaker.max_pending", "over_max_pending"),
    ("over_max_requests", "Requests refused at breaker.max_requests", "over_max_requests"),
)
_GAUGES = (
    ("current_queue", "Requests waiting for a connection", "queue"),
    ("active_connections", "Connections busy with a request", "active"),
    ("idle_connections", "Pooled idle connections", "idle"),
    ("weight", "Configured weight", "weight"),
)


def _backends(rows: list[BackendRow]) -> Iterator[Metric]:
    labels = ["cluster", "backend"]
    for name, help_text, field in _COUNTERS:
        counter = CounterMetricFamily(f"l7lb_backend_{name}", help_text, labels=labels)
        for row in rows:
            counter.add_metric([row.cluster, row.backend], getattr(row, field))
        yield counter
    for name, help_text, field in _GAUGES:
        gauge = GaugeMetricFamily(f"l7lb_backend_{name}", help_text, labels=labels)
        for row in rows:
            gauge.add_metric([row.cluster, row.backend], getattr(row, field))
        yield gauge
    responses = CounterMetricFamily("l7lb_backend_http_responses", "HTTP responses by class",
                                    labels=[*labels, "code"])
    up = GaugeMetricFamily("l7lb_backend_up", "1 when the backend takes requests: ready, "
                           "not down, breaker not open", labels=labels)
    health = GaugeMetricFamily("l7lb_backend_health_state", "1 for the backend's health state",
                               labels=[*labels, "state"])
    breaker = GaugeMetricFamily("l7lb_backend_breaker_state", "1 for the breaker's state",
                                labels=[*labels, "state"])
    phi = GaugeMetricFamily("l7lb_backend_phi", "Phi-accrual suspicion (absent without history)",
                            labels=labels)
    cc = InfoMetricFamily("l7lb_backend_congestion_control", "Congestion control in effect",
                          labels=labels)
    durations = HistogramMetricFamily("l7lb_backend_http_request_duration_seconds",
                                      "Request durations (answered requests)", labels=labels)
    for row in rows:
        key = [row.cluster, row.backend]
        for index in range(1, 6):
            responses.add_metric([*key, f"{index}xx"], row.responses[index])
        up.add_metric(key, int(in_service(row.admin_state, row.health, row.breaker)))
        for state in HEALTH_STATES:
            health.add_metric([*key, state], int(row.health == state))
        for state in BREAKER_STATES:
            breaker.add_metric([*key, state], int(row.breaker == state))
        if row.phi is not None:
            phi.add_metric(key, row.phi)
        cc.add_metric(key, {"algorithm": row.cc or "default"})
        durations.add_metric(key, _cumulative(row.durations), row.duration_sum)
    yield from (responses, up, health, breaker, phi, cc, durations)


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts):
        total += count
        out.append((bound, total))
    return out
