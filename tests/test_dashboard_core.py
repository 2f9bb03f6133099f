"""The dashboard's sans-IO parts: the history's rates and percentiles, and
the page rendered from a document (complete without JavaScript)."""

from __future__ import annotations

import re

from dataplane.metrics.history import History, Totals
from dataplane.metrics.page import cell, render

BOUNDS = (1, 10, 100)


def test_rates_and_percentiles_come_from_the_seconds_deltas():
    history = History(BOUNDS, span=3)
    history.sample(0.0, 1000.0, {"a": Totals(0, 0, (0, 0, 0, 0))})
    history.sample(1.0, 1001.0, {"a": Totals(100, 5, (50, 49, 1, 0))})
    history.sample(3.0, 1003.0, {"a": Totals(300, 5, (50, 49, 201, 0))})
    points = list(history.series["a"])
    assert [(p.rate, p.errors) for p in points] == [(100.0, 5.0), (100.0, 0.0)]
    assert points[0].p50 == 1.0 and points[0].p99 == 10.0    # the 50th in [0,1], the 99th in (1,10]
    assert 1 < points[1].p50 <= 100 and points[1].p99 <= 100
    assert history.recent("a") == (100.0, 0.025)
    for second in range(4, 10):             # at most ``span`` points
        history.sample(float(second), 1000.0 + second, {"a": Totals(300, 5, (50, 49, 201, 0))})
    assert len(history.series["a"]) == 3 and history.series["a"][-1].p50 is None
    history.sample(11.0, 1011.0, {})          # a backend no longer configured is forgotten
    assert history.export() == {}


def test_totals_that_start_again_make_no_point():
    history = History(BOUNDS)
    history.sample(0.0, 0.0, {"a": Totals(100, 0, (100, 0, 0, 0))})
    history.sample(1.0, 1.0, {"a": Totals(3, 0, (3, 0, 0, 0))})
    assert "a" not in history.series


def test_beyond_the_last_bound_reads_as_the_last_bound():
    assert History(BOUNDS).percentile((0, 0, 0, 7), 0.99) == 100.0


def document(health: str = "down") -> dict:
    row = {"key": "198.18.0.5:8000", "name": "198.18.0.5:8000", "health": health,
           "state": "ready", "phi": 12.345, "phi_threshold": 8.0, "breaker": "open",
           "weight": 100, "cc": None, "in_flight": 3, "rate": 12.5, "error_share": 0.125,
           "p50_ms": 1.0, "p99_ms": None, "requests": 10, "errors": 2}
    return {"process": {"version": "0.1.0", "pid": 7, "uptime_s": 90061.0, "mode": "http",
                        "listeners": ["198.18.0.3:8080"], "workers": 2, "reloads": 1,
                        "worker_restarts": 0},
            "clusters": [{"name": "api<b>", "backends": [row]}],
            "events": [{"at": 0.0, "kind": "health", "backend": "198.18.0.5:8000",
                        "from": "up", "to": "down", "reason": "probe failed: <refused>"}],
            "routes": [], "fleet": None}


def test_the_page_shows_the_tables_without_javascript():
    html = render(document()).decode()
    cells = dict(re.findall(r'data-field="(\w+)" class="[^"]*">([^<]*)<', html))
    assert cells == {"name": "198.18.0.5:8000", "health": "down", "phi": "12.35 / 8",
                     "breaker": "open", "state": "ready", "weight": "100", "cc": "-",
                     "in_flight": "3", "rate": "12.5", "error_share": "12.5%",
                     "p50_ms": "1", "p99_ms": "-"}
    assert "api&lt;b&gt;" in html and "&lt;refused&gt;" in html and "<b>" not in html
    assert 'class="health bad"' in html and 'class="breaker bad"' in html
    assert "1d 01:01:01" in html
    text = re.sub(r"<[^>]*>", "|", html)          # what a reader sees, cells apart
    assert text.index("p99 ms|") < text.index("198.18.0.5:8000") < text.index("Health")
    assert "||198.18.0.5:8000||down||" in text     # its first mention is its row
    assert '<script src="/dashboard.js" defer></script>' in html and "http" + "s://" not in html


def test_cells_as_the_script_writes_them():
    assert cell("phi", {"phi": None, "phi_threshold": 8.0}) == "- / 8"
    assert cell("rate", {"rate": 0.30000000000000004}) == "0.3"
    assert cell("rate", {"rate": 1000000.0}) == "1000000"
