"""What the admin socket's commands do, on the control process's state."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable

import msgspec

from .. import __version__
from ..breaker.machine import Phase
from .admin import AdminError
from ..channel.messages import BackendState
from ..kernel.libbpf import BpfError
from ..config import DEFAULT, backend_key, check_algorithm
from .state import name_of
from .congestion import merge_samples
from .view import ControlView

if TYPE_CHECKING:
    from .supervisor import Supervisor

STATES = ("ready", "drain", "maint")
BREAKER_ORDERS = {"closed": Phase.CLOSED, "open": Phase.OPEN}
REMOVE_WAIT = 30.0      # seconds a normal removal waits for the backend to drain


def admin_commands(control: ControlView) -> dict[str, Any]:
    def status(_: dict[str, Any]) -> dict[str, Any]:
        settings = control.config.balancer
        return {
            "version": __version__, "uptime_s": round(time.time() - control.started, 1),
            "mode": settings.mode, "listeners": [f"{settings.bind}:{settings.port}"],
            "algorithm": settings.algorithm, "state_version": control.state.version,
            "fleet": control.fleet.mode if control.fleet is not None else "off",
            "workers": _workers(control.supervisor)}

    def backends(_: dict[str, Any]) -> list[dict[str, Any]]:
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
                "waiting": pool.get("waiting", 0), "requests": tally.requests,
                "errors": tally.errors, "p50_ms": tally.percentile(0.5),
                "p99_ms": tally.percentile(0.99), "health": state.health,
                "phi": control.health.phi(key), "breaker": control.breakers.label(key),
                "cc": state.cc or None})
        return rows

    def per_backend(args: dict[str, Any],
                    describe: Callable[[str], dict[str, Any] | None]) -> list[dict[str, Any]]:
        """``describe`` of the backend named in ``args``, or of every backend."""
        if args.get("name") is not None:
            keys = [name_of(_find(control, args))]
        else:
            keys = [name_of(s) for s in control.state.backends]
        return [row for key in keys if (row := describe(key)) is not None]

    def health(args: dict[str, Any]) -> list[dict[str, Any]]:
        return per_backend(args, control.health.describe)

    def breaker(args: dict[str, Any]) -> list[dict[str, Any]]:
        rows = per_backend(args, control.breakers.describe)
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

    def routes(_: dict[str, Any]) -> list[dict[str, Any]]:
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

    def stats(_: dict[str, Any]) -> dict[str, Any]:
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
            "bytes_in": sum(t.bytes_in for t in control.tally.backends.values()),
            "bytes_out": sum(t.bytes_out for t in control.tally.backends.values())}
        return {"backends": per_backend, "listeners": {f"{settings.bind}:{settings.port}": listener}}

    async def backend_add(args: dict[str, Any]) -> dict[str, Any]:
        host, port = _address(_text(args, "name"))
        cluster = _cluster(control, args)
        if control.state.find(backend_key(cluster, f"{host}:{port}")) is not None:
            raise AdminError("exists", f"backend {host}:{port} exists already in {cluster}")
        weight = _weight(args.get("weight", 100))
        cc = _algorithm(args.get("cc"))
        await _commit(control, None, BackendState(
            host, port, weight, "ready", control.congestion.effective(cc), False, cc, cluster))
        return {"name": f"{host}:{port}", "cluster": cluster, "weight": weight,
                "cc": cc or None, "state_version": control.state.version}

    async def backend_remove(args: dict[str, Any]) -> dict[str, Any]:
        old = _find(control, args)
        name, key = _text(args, "name"), name_of(old)
        force = bool(args.get("force"))
        timeout = args.get("timeout", REMOVE_WAIT)
        if not isinstance(timeout, (int, float)) or not 0 <= timeout <= 3600:
            raise AdminError("bad_args", "timeout must be seconds from 0 to 3600")
        if not force:
            await _commit(control, old, msgspec.structs.replace(old, state="drain"))
            deadline = time.monotonic() + timeout
            while _busy(control, key) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if _busy(control, key):
                raise AdminError("busy", f"{name} still has requests in flight after "
                                         f"{timeout}s; it stays in drain (use --force)")
        gone = _find(control, args)
        await _commit(control, gone, None)
        return {"name": name, "cluster": gone.cluster, "removed": True,
                "state_version": control.state.version}

    async def backend_set(args: dict[str, Any]) -> dict[str, Any]:
        old = _find(control, args)
        name, key = _text(args, "name"), name_of(old)
        changes: dict[str, Any] = {}
        if "weight" in args:
            changes["weight"] = _weight(args["weight"])
        if "state" in args:
            if args["state"] not in STATES:
                raise AdminError("bad_args", f"state must be one of {', '.join(STATES)}")
            changes["state"] = args["state"]
        if "cc" in args:     # new connections only; "" goes back to the kernel default
            changes["cc_wanted"] = _algorithm(args["cc"])
            changes["cc"] = control.congestion.effective(changes["cc_wanted"])
        if "client_side" in args:
            if not isinstance(args["client_side"], bool):
                raise AdminError("bad_args", "client_side must be true or false")
            changes["client_side"] = args["client_side"]
        if "breaker" in args:
            if args["breaker"] not in BREAKER_ORDERS:
                raise AdminError("bad_args", "breaker must be closed or open")
            if not control.breakers.enabled(key):
                raise AdminError("unavailable", "breakers are off (breaker.enabled: false)")
            control.breakers.force(key, BREAKER_ORDERS[args["breaker"]])
            old = _find(control, args)
        elif not changes:
            raise AdminError("bad_args", "give weight, state, cc, client_side or breaker")
        new = msgspec.structs.replace(old, **changes)
        if changes:
            await _commit(control, old, new)
            new = _find(control, args)
        return {"name": name, "cluster": new.cluster, "weight": new.weight, "state": new.state,
                "breaker": control.breakers.label(key),
                "cc": new.cc_wanted or None, "cc_in_effect": new.cc or None,
                "client_side": new.client_side, "state_version": control.state.version}

    def cc(_: dict[str, Any]) -> dict[str, Any]:
        return control.congestion.describe(control.state.backends,
                                           merge_samples(control.reports()))

    def cc_set(args: dict[str, Any]) -> dict[str, Any]:
        name, key = _text(args, "algorithm"), _text(args, "key")
        try:
            tunables = control.congestion.bpf.tune(name, key, args.get("value"))
        except ValueError as exc:
            raise AdminError("bad_args", str(exc)) from None
        except BpfError as exc:
            raise AdminError("unavailable", str(exc)) from None
        return {"algorithm": name, "tunables": tunables}

    def reload(args: dict[str, Any]) -> dict[str, Any]:
        path = args.get("path")
        if path is not None and not isinstance(path, str):
            raise AdminError("bad_args", "path must be a string")
        return control.reload(path)

    def tls(_: dict[str, Any]) -> dict[str, Any]:
        certificates = control.tls.describe()
        if certificates is None:
            raise AdminError("unavailable", "the listener has no TLS (no balancer.tls)")
        settings = control.config.balancer
        reports = control.reports()
        return {"certificates": certificates,
                "listeners": {f"{settings.bind}:{settings.port}": {
                    "handshakes": sum(r.tls[0] for r in reports),
                    "resumed": sum(r.tls[1] for r in reports)}}}

    def fleet(_: dict[str, Any]) -> dict[str, Any]:
        if control.fleet is None:
            raise AdminError("unavailable", "this balancer is standalone (no fleet section)")
        return control.fleet.describe()

    def config_show(_: dict[str, Any]) -> Any:
        return msgspec.to_builtins(control.config, enc_hook=float)   # Duration -> seconds

    return {"status": status, "backends": backends, "stats": stats,
            "backend.add": backend_add, "backend.remove": backend_remove,
            "backend.set": backend_set, "reload": reload, "config.show": config_show,
            "cc": cc, "cc.set": cc_set, "health": health, "breaker": breaker,
            "routes": routes, "fleet": fleet, "tls": tls}


def _workers(supervisor: "Supervisor | None") -> list[dict[str, Any]]:
    """Every worker slot, a process in it or not (pid 0 while it restarts)."""
    if supervisor is None:
        return []
    return [{"slot": s.index, "pid": s.pid, "state": s.state(supervisor.stopping),
             "state_version": s.version} for s in supervisor.slots]


async def _commit(control: ControlView, before: BackendState | None,
                  after: BackendState | None) -> None:
    """One backend added (no ``before``), changed, or removed (no ``after``):
    here, or in a fleet through etcd (control/fleet.py)."""
    if control.fleet is not None:
        await control.fleet.change(before, after)
        return
    backends = control.state.backends
    if before is None and after is not None:
        control.state.publish([*backends, after])
    elif after is None:
        control.state.publish([s for s in backends if s is not before])
    else:
        control.state.publish([after if s is before else s for s in backends])


def _given(value: Any) -> Any:
    """A configuration value without the keys left unset (None, empty)."""
    if isinstance(value, dict):
        return {k: _given(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_given(v) for v in value]
    return value


def _find(control: ControlView, args: dict[str, Any]) -> BackendState:
    """The backend ``name`` (HOST:PORT) of group ``cluster`` (default: default)."""
    name, cluster = _text(args, "name"), _cluster(control, args)
    state = control.state.find(backend_key(cluster, name))
    if state is None:
        where = "" if cluster == DEFAULT else f" in cluster {cluster}"
        raise AdminError("no_such_backend", f"no backend {name}{where}")
    return state


def _cluster(control: ControlView, args: dict[str, Any]) -> str:
    cluster = args.get("cluster") or DEFAULT
    if not isinstance(cluster, str) or cluster not in control.config.group_names():
        raise AdminError("bad_args", f"no cluster {cluster!r}; known: "
                                     f"{', '.join(control.config.group_names())}")
    return cluster


def _algorithm(value: Any) -> str:
    """A congestion-control name to ask for; "" (or None) is the kernel default."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise AdminError("bad_args", "cc must be a string")
    try:
        check_algorithm(value)
    except ValueError as exc:
        raise AdminError("bad_args", str(exc)) from None
    return value


def _weight(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10000:
        raise AdminError("bad_args", "weight must be an integer from 0 to 10000")
    return value


def _address(name: str) -> tuple[str, int]:
    host, _, port = name.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AdminError("bad_args", f"{name!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _busy(control: ControlView, name: str) -> bool:
    """Requests still in flight on the backend, as the workers last reported."""
    pool = control.tally.pool_totals(control.reports()).get(name, {})
    return pool.get("busy", 0) > 0


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise AdminError("bad_args", f"{key} must be a non-empty string")
    return value

