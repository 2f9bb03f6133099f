"""The admin commands that read: what lbctl's tables show."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import msgspec

from .. import __version__
from ..config import DEFAULT
from . import command_args as arg
from .admin import AdminError
from .command_args import Args, Reply
from .congestion import merge_samples
from .state import name_of
from .view import ControlView

if TYPE_CHECKING:
    from .supervisor import Supervisor


def status(control: ControlView, _: Args) -> Reply:
    settings = control.config.balancer
    return {
        "version": __version__, "uptime_s": round(time.time() - control.started, 1),
        "mode": settings.mode, "listeners": [f"{settings.bind}:{settings.port}"],
        "algorithm": settings.algorithm, "state_version": control.state.version,
        "fleet": control.fleet.mode if control.fleet is not None else "off",
        "workers": _workers(control.supervisor), **control.lineage()}


def backends(control: ControlView, _: Args) -> list[Reply]:
    pools = control.tally.pool_totals(control.reports())
    rows = []
    for state in control.state.backends:
        name, key = f"{state.host}:{state.port}", name_of(state)
        pool = pools.get(key, {})
        tally = control.tally.backend(key)
        rows.append({
            "name": name, "cluster": state.cluster, "address": name, "state": state.state,
            "weight": state.weight,
            "active": pool.get("busy", 0), "idle": pool.get("idle", 0),
            "streams": pool.get("streams", 0),      # HTTP/2: requests on those connections
            "waiting": pool.get("waiting", 0), "requests": tally.requests,
            "errors": tally.errors, "p50_ms": tally.percentile(0.5),
            "p99_ms": tally.percentile(0.99), "health": state.health,
            "phi": control.health.phi(key), "breaker": control.breakers.label(key),
            "cc": state.cc or None})
    return rows


def _per_backend(control: ControlView, args: Args,
                 describe: Callable[[str], Args | None]) -> list[Reply]:
    """``describe`` of the backend named in ``args``, or of every backend."""
    if args.get("name") is not None:
        keys = [name_of(arg.find(control, args))]
    else:
        keys = [name_of(s) for s in control.state.backends]
    return [row for key in keys if (row := describe(key)) is not None]


def health(control: ControlView, args: Args) -> list[Reply]:
    return _per_backend(control, args, control.health.describe)


def breaker(control: ControlView, args: Args) -> list[Reply]:
    rows = _per_backend(control, args, control.breakers.describe)
    pools = control.tally.pool_totals(control.reports())
    for row in rows:
        pool = pools.get(row["name"], {})    # a describe row's name is the key
        state = control.state.find(row["name"])
        settings = control.config.group(state.cluster if state else DEFAULT).breaker
        row["limits"] = {
            key: {"limit": getattr(settings, key), "in_use": pool.get(use, 0),
                  "refused": pool.get(f"over_{key}", 0)}
            for key, use in (("max_connections", "open"), ("max_pending", "waiting"),
                             ("max_requests", "inflight"))}
    return rows


def routes(control: ControlView, _: Args) -> list[Reply]:
    counts = [r.routes for r in control.reports()]
    rows = []
    for i, route in enumerate(control.config.routes):
        action = ("respond" if route.respond else "redirect" if route.redirect
                  else f"cluster {route.cluster or DEFAULT}")
        rows.append({"index": i, "name": route.name or f"#{i}",
                     "match": _given(msgspec.to_builtins(route.match)),
                     "action": action,
                     "requests": sum(c[i] for c in counts if i < len(c))})
    return rows


def stats(control: ControlView, _: Args) -> Reply:
    reports = control.reports()
    pools = control.tally.pool_totals(reports)
    per_backend = {}
    for state in control.state.backends:
        name = name_of(state)
        tally, pool = control.tally.backend(name), pools.get(name, {})
        busy = pool.get("busy", 0)
        tally.max_open = max(tally.max_open, busy)
        tally.max_queue = max(tally.max_queue, pool.get("waiting", 0))
        per_backend[name] = {
            "sessions_current": busy, "sessions_max": tally.max_open,
            "sessions_total": tally.requests, "bytes_in": tally.bytes_in,
            "bytes_out": tally.bytes_out, "connect_errors": tally.connect_errors,
            "response_errors": tally.response_errors, "retries": pool.get("retries", 0),
            "retries_budget_exhausted": pool.get("retries_budget_exhausted", 0),
            **{f"over_{k}": pool.get(f"over_{k}", 0)
               for k in ("max_connections", "max_pending", "max_requests")},
            **{f"http_{k}xx": tally.statuses[k] for k in range(1, 6)},
            "queue_current": pool.get("waiting", 0), "queue_max": tally.max_queue,
            "queue_timeouts": pool.get("queue_timeouts", 0),
            "connections_opened": pool.get("opened", 0),
            "connections_reused": pool.get("reused", 0),
            "last_state_change": round(control.state.state_changed.get(name, 0.0), 3)}
    settings = control.config.balancer
    listener = {
        "sessions_current": sum(r.open for r in reports),
        "sessions_max": control.tally.max_sessions,
        "sessions_total": sum(r.connections for r in reports),
        "request_errors": sum(r.rejected for r in reports),
        "refused": sum(r.refused for r in reports),
        "limited_connections": sum(r.limited[0] for r in reports),
        "limited_requests": sum(r.limited[1] for r in reports),
        **{f"http2_{name}": sum(r.http2[at] for r in reports)
           for at, name in enumerate(("connections", "streams", "calmed"))},
        "bytes_in": sum(t.bytes_in for t in control.tally.backends.values()),
        "bytes_out": sum(t.bytes_out for t in control.tally.backends.values())}
    return {"backends": per_backend, "listeners": {f"{settings.bind}:{settings.port}": listener}}


def cc(control: ControlView, _: Args) -> Reply:
    return control.congestion.describe(control.state.backends,
                                       merge_samples(control.reports()),
                                       control.cc_auto.describe())


def tls(control: ControlView, _: Args) -> Reply:
    certificates = control.tls.describe()
    if certificates is None:
        raise AdminError("unavailable", "the listener has no TLS (no balancer.tls)")
    settings = control.config.balancer
    reports = control.reports()
    return {"certificates": certificates,
            "listeners": {f"{settings.bind}:{settings.port}": {
                "handshakes": sum(r.tls[0] for r in reports),
                "resumed": sum(r.tls[1] for r in reports),
                "kernel_tls": merge_counts(r.kernel_tls for r in reports)}}}


def merge_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for each in counts:
        for key, value in each.items():
            total[key] = total.get(key, 0) + value
    return total


def fleet(control: ControlView, _: Args) -> Reply:
    if control.fleet is None:
        raise AdminError("unavailable", "this balancer is standalone (no fleet section)")
    return control.fleet.describe()


def config_show(control: ControlView, _: Args) -> Any:
    return msgspec.to_builtins(control.config, enc_hook=float)   # Duration -> seconds


def _workers(supervisor: "Supervisor | None") -> list[dict[str, Any]]:
    """Every worker slot, a process in it or not (pid 0 while it restarts)."""
    if supervisor is None:
        return []
    return [{"slot": s.index, "pid": s.pid, "state": s.state(supervisor.stopping),
             "state_version": s.version} for s in supervisor.slots]


def _given(value: Any) -> Any:
    """A configuration value without the keys left unset (None, empty)."""
    if isinstance(value, dict):
        return {k: _given(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_given(v) for v in value]
    return value
