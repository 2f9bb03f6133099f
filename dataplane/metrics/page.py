"""The dashboard page: the dashboard document (control/dashboard.py) as HTML
tables, complete without JavaScript; dashboard.js then refreshes the same
tables from /dashboard.json once a second and draws the history charts.
The page, its script and its style ship in this package (assets/): nothing
is fetched from elsewhere. No I/O beyond reading those files once."""

from __future__ import annotations

import time
from functools import cache
from html import escape
from importlib import resources
from typing import Any

# Each backend table's columns: (field in the document, heading).
COLUMNS = (("name", "backend"), ("health", "health"), ("phi", "φ / threshold"),
           ("breaker", "breaker"), ("state", "admin"), ("weight", "weight"), ("cc", "cc"),
           ("in_flight", "in flight"), ("rate", "req/s"), ("error_share", "errors"),
           ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"))


@cache
def asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("assets", name).read_bytes()


def number(value: float | int | None) -> str:
    """At most two decimals, no trailing zeros (as dashboard.js's ``number``)."""
    if value is None:
        return "-"
    return f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def cell(field: str, row: dict[str, Any]) -> str:
    """A backend table cell's text, as dashboard.js writes it too."""
    value = row[field]
    if field == "phi":
        return f"{number(value)} / {number(float(row['phi_threshold']))}"
    if field == "error_share":
        return f"{value * 100:.1f}%"
    if isinstance(value, (int, float)) or value is None:
        return number(value)
    return str(value)


def render(document: dict[str, Any]) -> bytes:
    process = document["process"]
    parts = [_head(process), _process(process)]
    for cluster in document["clusters"]:
        parts.append(_cluster(cluster))
    parts.append('<section id="charts"><h2>Last 5 minutes</h2>'
                 '<p class="note">Charts need JavaScript.</p></section>')
    parts.append(_events(document["events"]))
    parts.append(_routes(document["routes"]))
    if document["fleet"] is not None:
        parts.append(_fleet(document["fleet"]))
    parts.append("</main></body></html>\n")
    return "".join(parts).encode()


def _head(process: dict[str, Any]) -> str:
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>l7lb {escape(process["version"])}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="stylesheet" href="/dashboard.css">'
            '<script src="/dashboard.js" defer></script></head><body><main>')


def _process(process: dict[str, Any]) -> str:
    facts = (("version", process["version"]), ("pid", process["pid"]),
             ("uptime", _duration(process["uptime_s"])), ("mode", process["mode"]),
             ("listeners", " ".join(process["listeners"])), ("workers", process["workers"]),
             ("reloads", process["reloads"]), ("worker restarts", process["worker_restarts"]))
    items = "".join(f'<div><dt>{escape(name)}</dt><dd data-process="{escape(name)}">'
                    f'{escape(str(value))}</dd></div>' for name, value in facts)
    return (f'<header><h1>l7lb</h1><dl id="process">{items}</dl>'
            f'<p id="updated">as of {time.strftime("%H:%M:%S")}</p></header>')


def _cluster(cluster: dict[str, Any]) -> str:
    name = escape(cluster["name"])
    heads = "".join(f"<th>{escape(heading)}</th>" for _, heading in COLUMNS)
    rows = "".join(_backend_row(row) for row in cluster["backends"])
    return (f'<section class="cluster" data-cluster="{name}"><h2>cluster {name}</h2>'
            f'<table class="backends"><thead><tr>{heads}</tr></thead>'
            f'<tbody>{rows}</tbody></table></section>')


def _backend_row(row: dict[str, Any]) -> str:
    cells = "".join(f'<td data-field="{field}" class="{field} {_tone(field, row)}">'
                    f'{escape(cell(field, row))}</td>' for field, _ in COLUMNS)
    return f'<tr data-backend="{escape(row["name"])}" data-key="{escape(row["key"])}">{cells}</tr>'


def _tone(field: str, row: dict[str, Any]) -> str:
    """A cell's colour class: what needs a look stands out."""
    value = row[field]
    if field == "health":
        return {"up": "good", "down": "bad", "slow_start": "warn"}.get(value, "")
    if field == "breaker":
        return "good" if value == "closed" else "bad" if value == "open" else "warn"
    if field == "error_share":
        return "bad" if value >= 0.05 else "warn" if value > 0 else ""
    return ""


def _events(events: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td>{time.strftime("%H:%M:%S", time.localtime(e["at"]))}</td>'
        f'<td>{escape(e["kind"])}</td><td>{escape(e["backend"])}</td>'
        f'<td>{escape(e["from"])} → {escape(e["to"])}</td><td>{escape(e["reason"] or "")}</td></tr>'
        for e in events) or '<tr><td colspan="5">none yet</td></tr>'
    return ('<section><h2>Health transitions and breaker changes</h2><table id="events">'
            '<thead><tr><th>at</th><th>what</th><th>backend</th><th>change</th><th>reason</th>'
            f'</tr></thead><tbody>{rows}</tbody></table></section>')


def _routes(routes: list[dict[str, Any]]) -> str:
    if not routes:
        return ""
    rows = "".join(f'<tr><td>{escape(r["name"])}</td><td>{escape(r["action"])}</td>'
                   f'<td>{r["requests"]}</td></tr>' for r in routes)
    return ('<section><h2>Routes</h2><table id="routes"><thead><tr><th>route</th>'
            f'<th>action</th><th>hits</th></tr></thead><tbody>{rows}</tbody></table></section>')


def _fleet(fleet: dict[str, Any]) -> str:
    members = "".join(f"<li>{escape(m)}{' (this one)' if m == fleet['member'] else ''}</li>"
                      for m in fleet["members"])
    return (f'<section><h2>Fleet</h2><p>etcd: {escape(fleet["mode"])}</p>'
            f'<ul id="fleet">{members}</ul></section>')


def _duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    return (f"{days}d " if days else "") + time.strftime("%H:%M:%S", time.gmtime(rest))
