"""The arguments of admin commands, checked: a bad one is an AdminError
(``bad_args``, or ``no_such_backend`` for a backend that is not there)."""

from __future__ import annotations

from typing import Any

from ..channel.messages import BackendState
from ..config import DEFAULT, backend_key, check_algorithm
from .admin import AdminError
from .view import ControlView

Args = dict[str, Any]      # a command's arguments, as the client sent them
Reply = dict[str, Any]     # a command's result


def find(control: ControlView, args: Args) -> BackendState:
    """The backend ``name`` (HOST:PORT) of group ``cluster`` (default: default)."""
    name, group = text(args, "name"), cluster(control, args)
    state = control.state.find(backend_key(group, name))
    if state is None:
        where = "" if group == DEFAULT else f" in cluster {group}"
        raise AdminError("no_such_backend", f"no backend {name}{where}")
    return state


def cluster(control: ControlView, args: Args) -> str:
    """The group ``cluster`` names (default: default)."""
    group = args.get("cluster") or DEFAULT
    if not isinstance(group, str) or group not in control.config.group_names():
        raise AdminError("bad_args", f"no cluster {group!r}; known: "
                                     f"{', '.join(control.config.group_names())}")
    return group


def algorithm(value: Any) -> str:
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


def weight(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10000:
        raise AdminError("bad_args", "weight must be an integer from 0 to 10000")
    return value


def address(name: str) -> tuple[str, int]:
    host, _, port = name.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AdminError("bad_args", f"{name!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def text(args: Args, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise AdminError("bad_args", f"{key} must be a non-empty string")
    return value
