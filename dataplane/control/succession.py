"""Which process serves, around an upgrade or a takeover (docs/process.md):
the control process's side of takeover.py (it starts by taking over) and of
upgrade.py (it hands over, then retires), and what ``lbctl status`` says of
the processes before and after it."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ..handover.carried import Carried
from .carry import adopt, carry
from .supervisor import MAX_START_FAILURES, Supervisor
from .takeover import Takeover, report_failure
from .upgrade import Upgrade
from .view import ControlView

if TYPE_CHECKING:
    import asyncio

    from .admin import AdminServer
    from .metrics import Metrics
    from .notify import Notifier

log = structlog.get_logger("l7lb.upgrade")


class Serving(ControlView, Protocol):
    """What the succession needs of the control process besides its view."""
    path: str | None
    admin: "AdminServer | None"
    metrics: "Metrics | None"
    notify: "Notifier"

    @property
    def running(self) -> Supervisor: ...
    def stop(self, exit_code: int = 0) -> None: ...


class Succession:
    def __init__(self, control: Serving, loop: "asyncio.AbstractEventLoop") -> None:
        self.control = control
        self.takeover: Takeover | None = None      # until this process serves
        self.previous: list[int] = []              # the processes it took over from
        self.successor = 0                         # retiring: the new process's pid
        self.upgrade = Upgrade(self, loop)

    # -- starting: taking over --------------------------------------------
    def begin(self) -> Takeover | None:
        """The process to take over from, if any (TakeoverError: an upgrade's
        giver cannot be reached)."""
        self.takeover = Takeover.find(self.control.config.admin.socket)
        return self.takeover

    @property
    def beside(self) -> bool:
        """The admin socket's path is still the process's taken over."""
        return self.takeover is not None and self.takeover.upgrade

    def adopt(self) -> None:
        if self.takeover is not None:
            adopt(self.control, self.takeover.carried)

    def serving(self) -> None:
        """Every worker has its first state: the admin path is ours, the
        processes taken over drain."""
        takeover, self.takeover = self.takeover, None
        if takeover is None:
            return
        self.control.running.patience = MAX_START_FAILURES
        if self.control.admin is not None:
            self.control.admin.settle()
        takeover.done()
        self.previous = takeover.pids

    def failed(self, reason: str) -> int:
        """This process cannot serve: say why (to the upgrade that started it
        too); the process it would have taken over keeps serving."""
        log.error("cannot start", reason=reason)
        if self.takeover is not None:
            report_failure(reason)
            self.takeover.close()
            self.takeover = None
        return 1

    def give_up(self) -> None:
        """Workers keep dying at start (the supervisor's verdict)."""
        if self.takeover is not None:
            self.failed(self.control.running.why)
        self.control.stop(exit_code=1)

    # -- what upgrade.py asks, handing over ------------------------------------
    @property
    def path(self) -> str | None:
        return self.control.path

    @property
    def admin_path(self) -> str:
        return self.control.config.admin.socket

    @property
    def stopping(self) -> bool:
        return self.control.running.stopping

    def handed_sockets(self) -> tuple[list[socket.socket], socket.socket | None]:
        metrics = self.control.metrics
        return self.control.running.listeners(), metrics.listening() if metrics else None

    def carried(self, slots: list[int], metrics: bool) -> Carried:
        return carry(self.control, slots, metrics)

    def retire(self, successor: int) -> None:
        """The new process serves: systemd follows it now; stop accepting,
        drain and exit."""
        self.successor = successor
        control = self.control
        control.notify.send(f"MAINPID={successor}")
        for part in (control.admin, control.metrics, control.running):
            if part is not None:
                part.close()          # its copies of the sockets: the new one has its own
        log.info("retiring: the new process serves", new_pid=successor)
        control.stop()

    def lineage(self) -> dict[str, Any]:
        """For lbctl status: this process, and the ones around an upgrade."""
        return {"pid": os.getpid(), "started": self.control.started,
                "draining": [pid for pid in self.previous if _alive(pid)],
                "succeeded_by": self.successor or None}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
