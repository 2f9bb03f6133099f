"""The admin socket's commands: one handler each, by name (docs/admin-protocol.md).
A handler takes the control process's view and the command's arguments."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from . import change_commands as change
from . import read_commands as read
from .command_args import Args
from .view import ControlView

Handler = Callable[[ControlView, Args], Any]     # a reply, or a coroutine of one

COMMANDS: dict[str, Handler] = {
    "status": read.status, "backends": read.backends, "stats": read.stats,
    "health": read.health, "breaker": read.breaker, "routes": read.routes, "cc": read.cc,
    "tls": read.tls, "fleet": read.fleet, "config.show": read.config_show,
    "backend.add": change.backend_add, "backend.remove": change.backend_remove,
    "backend.set": change.backend_set, "cc.set": change.cc_set, "reload": change.reload,
}


def admin_commands(control: ControlView) -> dict[str, Callable[[Args], Any]]:
    """Each command bound to this control process, for the admin server."""
    return {name: partial(handler, control) for name, handler in COMMANDS.items()}
