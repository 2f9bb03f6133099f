"""What the admin socket's commands do, on the control process's state."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from . import __version__
from .admin import AdminError
from .channel import BackendState

if TYPE_CHECKING:
    from .control import Control

STATES = ("ready", "drain", "maint")


def admin_commands(control: "Control") -> dict:
    def status(_: dict) -> dict:
        settings = control.config.balancer
        return {
            "version": __version__, "uptime_s": round(time.time() - control.started, 1),
            "mode": settings.mode, "listeners": [f"{settings.bind}:{settings.port}"],
            "algorithm": settings.algorithm, "state_version": control.version,
            "workers": [{"slot": s.index, "pid": s.pid, "state_version": s.version}
                        for s in control.slots if s.pid]}

    def backends(_: dict) -> list[dict]:
        pools = _pool_totals(control)
        rows = []
        for state in control.states:
            name = f"{state.host}:{state.port}"
            open_, idle, waiting = pools.get(name, (0, 0, 0))
            rows.append({
                "name": name, "address": name, "state": state.state, "weight": state.weight,
                "active": open_ - idle, "idle": idle, "waiting": waiting,
                "requests": control.requests.get(name, 0), "errors": control.errors.get(name, 0),
                "phi": None, "breaker": None, "cc": None})
        return rows

    def backend_set(args: dict) -> dict:
        name = _text(args, "name")
        found = [s for s in control.states if f"{s.host}:{s.port}" == name]
        if not found:
            raise AdminError("no_such_backend", f"no backend {name}")
        weight, state = args.get("weight"), args.get("state")
        if weight is None and state is None:
            raise AdminError("bad_args", "give weight or state")
        if weight is not None and (not isinstance(weight, int) or isinstance(weight, bool)
                                   or not 0 <= weight <= 10000):
            raise AdminError("bad_args", "weight must be an integer from 0 to 10000")
        if state is not None and state not in STATES:
            raise AdminError("bad_args", f"state must be one of {', '.join(STATES)}")
        old = found[0]
        new = BackendState(old.host, old.port, old.weight if weight is None else weight,
                           old.state if state is None else state)
        control.publish([new if s is old else s for s in control.states])
        return {"name": name, "weight": new.weight, "state": new.state,
                "state_version": control.version}

    def reload(args: dict) -> dict:
        path = args.get("path")
        if path is not None and not isinstance(path, str):
            raise AdminError("bad_args", "path must be a string")
        return control.reload(path)

    def config_show(_: dict) -> Any:
        return msgspec.to_builtins(control.config, enc_hook=float)   # Duration -> seconds

    return {"status": status, "backends": backends, "backend.set": backend_set,
            "reload": reload, "config.show": config_show}


def _text(args: dict, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise AdminError("bad_args", f"{key} must be a non-empty string")
    return value


def _pool_totals(control: "Control") -> dict[str, tuple[int, int, int]]:
    """Open, idle and waiting per backend, summed over the live workers' reports."""
    totals: dict[str, list[int]] = {}
    for slot in control.slots:
        counters = slot.counters
        if counters is None or counters.pid != slot.pid:
            continue
        for name, open_, idle, waiting in counters.backends:
            total = totals.setdefault(name, [0, 0, 0])
            total[0] += open_
            total[1] += idle
            total[2] += waiting
    return {name: tuple(values) for name, values in totals.items()}
