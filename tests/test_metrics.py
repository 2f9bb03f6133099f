"""The metrics made, the ones docs/metrics.md lists and the ones the Grafana
dashboard uses are the same names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from dataplane.metrics.families import BUCKETS, BackendRow, Figures, families, in_service

DOCS = Path(__file__).resolve().parent.parent / "docs"


def exposed() -> str:
    row = BackendRow("default", "10.0.0.1:80", "ready", "up", 0.5, "closed", 100, 10,
                  [0, 0, 9, 0, 1, 0], 1, 0, 100, 2000, 3, 7, 0, 4, 0, 0, 0, 1, 2,
                  [1, 2, 3] + [0] * (len(BUCKETS) - 3) + [4], 0.5, "cubic")

    class Collector:
        def collect(self):
            yield from families(Figures("0.1.0", [row], 1, 10, 0, 0, 0, 1, 0, 0, 0, 0))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry).decode()


def made() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", exposed(), re.M)}


def test_every_metric_made_is_documented_and_every_documented_one_is_made():
    documented = set(re.findall(r"^\| `(l7lb_[a-z0-9_]+)` \|", (DOCS / "metrics.md").read_text(), re.M))
    assert made() == documented


def test_the_histogram_counts_add_up():
    text = exposed()
    assert 'le="+Inf"} 10.0' in text and "l7lb_backend_http_request_duration_seconds_count" \
        '{backend="10.0.0.1:80",cluster="default"} 10.0' in text


def test_the_dashboard_is_json_and_uses_only_metrics_that_exist():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\b(l7lb_[a-z0-9_]+)", e)}
    series = {line.split("{")[0].split(" ")[0] for line in exposed().splitlines()
              if line and not line.startswith("#")}
    assert used and used <= series, used - series


def test_breaker_limit_refusals_are_counted_per_backend():
    assert 'l7lb_backend_over_max_connections_total{backend="10.0.0.1:80",cluster="default"} 4.0' \
        in exposed()


def test_up_is_ready_not_down_and_breaker_not_open():
    """One definition serves l7lb_backend_up and /ready (control/metrics.py)."""
    assert in_service("ready", "up", "closed") and in_service("ready", "slow_start", "half_open")
    assert in_service("ready", "unknown", "closed")
    assert not in_service("drain", "up", "closed") and not in_service("maint", "up", "closed")
    assert not in_service("ready", "down", "closed") and not in_service("ready", "up", "open")
    assert 'l7lb_backend_up{backend="10.0.0.1:80",cluster="default"} 1.0' in exposed()
