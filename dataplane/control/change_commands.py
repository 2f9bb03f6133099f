"""The admin commands that change the running balancer: its backends, its
configuration file, its BPF algorithms' tunables."""

from __future__ import annotations

import asyncio
import time

import msgspec

from ..breaker.machine import Phase
from ..channel.messages import BackendState
from ..config import backend_key
from ..kernel.libbpf import BpfError
from . import command_args as arg
from .admin import AdminError
from .command_args import Args, Reply
from .state import name_of
from .view import ControlView

STATES = ("ready", "drain", "maint")
BREAKER_ORDERS = {"closed": Phase.CLOSED, "open": Phase.OPEN}
REMOVE_WAIT = 30.0      # seconds a normal removal waits for the backend to drain


async def backend_add(control: ControlView, args: Args) -> Reply:
    host, port = arg.address(arg.text(args, "name"))
    cluster = arg.cluster(control, args)
    if control.state.find(backend_key(cluster, f"{host}:{port}")) is not None:
        raise AdminError("exists", f"backend {host}:{port} exists already in {cluster}")
    weight = arg.weight(args.get("weight", 100))
    cc = arg.algorithm(args.get("cc"))
    await _commit(control, None, BackendState(
        host, port, weight, "ready", control.congestion.effective(cc), False, cc, cluster))
    return {"name": f"{host}:{port}", "cluster": cluster, "weight": weight,
            "cc": cc or None, "state_version": control.state.version}


async def backend_remove(control: ControlView, args: Args) -> Reply:
    old = arg.find(control, args)
    name, key = arg.text(args, "name"), name_of(old)
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
    gone = arg.find(control, args)
    await _commit(control, gone, None)
    return {"name": name, "cluster": gone.cluster, "removed": True,
            "state_version": control.state.version}


async def backend_set(control: ControlView, args: Args) -> Reply:
    old = arg.find(control, args)
    name, key = arg.text(args, "name"), name_of(old)
    changes: Args = {}
    if "weight" in args:
        changes["weight"] = arg.weight(args["weight"])
    if "state" in args:
        if args["state"] not in STATES:
            raise AdminError("bad_args", f"state must be one of {', '.join(STATES)}")
        changes["state"] = args["state"]
    if "cc" in args:     # new connections only; "" goes back to the kernel default
        changes["cc_wanted"] = arg.algorithm(args["cc"])
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
        old = arg.find(control, args)
    elif not changes:
        raise AdminError("bad_args", "give weight, state, cc, client_side or breaker")
    new = msgspec.structs.replace(old, **changes)
    if changes:
        await _commit(control, old, new)
        new = arg.find(control, args)
    return {"name": name, "cluster": new.cluster, "weight": new.weight, "state": new.state,
            "breaker": control.breakers.label(key),
            "cc": new.cc_wanted or None, "cc_in_effect": new.cc or None,
            "client_side": new.client_side, "state_version": control.state.version}


def cc_set(control: ControlView, args: Args) -> Reply:
    name, key = arg.text(args, "algorithm"), arg.text(args, "key")
    try:
        tunables = control.congestion.bpf.tune(name, key, args.get("value"))
    except ValueError as exc:
        raise AdminError("bad_args", str(exc)) from None
    except BpfError as exc:
        raise AdminError("unavailable", str(exc)) from None
    return {"algorithm": name, "tunables": tunables}


def reload(control: ControlView, args: Args) -> Reply:
    path = args.get("path")
    if path is not None and not isinstance(path, str):
        raise AdminError("bad_args", "path must be a string")
    return control.reload(path)


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


def _busy(control: ControlView, name: str) -> bool:
    """Requests still in flight on the backend, as the workers last reported."""
    pool = control.tally.pool_totals(control.reports()).get(name, {})
    return pool.get("busy", 0) > 0
