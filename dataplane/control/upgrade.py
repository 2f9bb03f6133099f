"""``lbctl upgrade`` and SIGUSR2, in the running control process: start the
new one, hand it the listeners and the state, and retire once it serves
(docs/process.md).

The new process is started from the code installed now, with this process's
argv (its ``-c`` replaced when lbctl names another file), environment and
stdout/stderr, plus ``L7LB_TAKEOVER`` (where to fetch the sockets: this
admin socket) and ``L7LB_UPGRADE_FD`` (a pipe for the reason it failed). It
takes over (control/takeover.py) and reports ``takeover.done`` once every
worker of its own took its first state; only then does this process stop
accepting, drain and exit. A new process that exits first, or takes longer
than UPGRADE_WAIT, leaves this one serving as before.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from typing import Any, Callable, Protocol

import structlog

from ..handover import wire
from ..handover.carried import Carried, encode
from .admin import AdminError, peer_pid, peer_socket
from .command_args import Args

log = structlog.get_logger("l7lb.upgrade")

UPGRADE_WAIT = 30.0     # seconds for a new process to serve, or it is stopped


class UpgradeHost(Protocol):
    """What the upgrade needs of the control process."""
    @property
    def path(self) -> str | None: ...
    def handed_sockets(self) -> tuple[list[socket.socket], socket.socket | None]: ...
    def carried(self, slots: list[int], metrics: bool) -> Carried: ...
    def retire(self, successor: int) -> None: ...
    @property
    def admin_path(self) -> str: ...
    @property
    def stopping(self) -> bool: ...


class Upgrade:
    def __init__(self, host: UpgradeHost, loop: asyncio.AbstractEventLoop) -> None:
        self.host, self.loop = host, loop
        self.child: subprocess.Popen[bytes] | None = None
        self.outcome: asyncio.Future[str | None] | None = None   # None: it serves
        self.reason = b""
        self.reason_fd: int | None = None     # the pipe the new process says why on

    def commands(self) -> dict[str, Callable[[Args], Any]]:
        return {"upgrade": self.command, wire.TAKEOVER: self.give, wire.DONE: self.taken}

    def on_signal(self) -> None:
        """SIGUSR2: the same as ``lbctl upgrade`` (the outcome is logged)."""
        async def upgrade() -> None:
            try:
                await self.command({})
            except AdminError as exc:
                log.error("upgrade failed; this process keeps serving", reason=exc.message)
        self.loop.create_task(upgrade())

    async def command(self, args: Args) -> dict[str, Any]:
        path = args.get("config") or self.host.path
        if self.child is not None:
            raise AdminError("busy", f"an upgrade is under way (new process {self.child.pid})")
        if self.host.stopping:
            raise AdminError("stopping", "this balancer is stopping")
        argv = successor_argv(sys.orig_argv, path) if isinstance(path, str) else None
        if argv is None:
            raise AdminError("no_file", "this balancer was not started with lbctl run -c FILE")
        child = self._start(argv)
        log.info("upgrade: new process started", new_pid=child.pid, config=path)
        try:
            failure = await asyncio.wait_for(asyncio.shield(self._outcome()), UPGRADE_WAIT)
        except asyncio.TimeoutError:
            failure = f"the new process did not serve within {UPGRADE_WAIT:g}s"
            child.send_signal(signal.SIGTERM)      # it drains what it accepted
        if failure is not None:
            self.child = None
            log.error("upgrade failed; this process keeps serving", reason=failure)
            raise AdminError("upgrade_failed", failure)
        return {"pid": child.pid, "previous_pid": os.getpid(), "config": path}

    def _start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        read, write = os.pipe2(os.O_CLOEXEC)
        env = dict(os.environ, **{wire.TAKEOVER_FROM: self.host.admin_path,
                                  wire.REPORT_FD: str(write)})
        env.pop("WATCHDOG_PID", None)    # systemd's, naming this process: the new one pings
        try:
            child = subprocess.Popen(argv, env=env,
                                     pass_fds=(write,), stdin=subprocess.DEVNULL)
        finally:
            os.close(write)
        self.child, self.reason = child, b""
        self.outcome = self.loop.create_future()
        os.set_blocking(read, False)
        self.reason_fd = read
        self.loop.add_reader(read, self._read_reason)
        pidfd = os.pidfd_open(child.pid)
        self.loop.add_reader(pidfd, self._exited, child, pidfd)
        return child

    def _outcome(self) -> asyncio.Future[str | None]:
        assert self.outcome is not None
        return self.outcome

    def _read_reason(self) -> None:
        fd = self.reason_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        self.reason += data
        if not data:
            self.loop.remove_reader(fd)
            os.close(fd)
            self.reason_fd = None

    def _exited(self, child: subprocess.Popen[bytes], pidfd: int) -> None:
        self.loop.remove_reader(pidfd)
        os.close(pidfd)
        code = child.wait()
        self._read_reason()           # what it wrote just before it exited
        if self.outcome is not None and not self.outcome.done():
            said = self.reason.decode(errors="replace").strip()
            self.outcome.set_result(said or f"the new process exited with code {code} "
                                            "before serving (its log says why)")

    # -- the new process's side of the hand-over ------------------------------
    def give(self, _args: Args) -> dict[str, Any]:
        """``takeover``: only the process this one started may take the sockets."""
        self._from_child()
        listeners, metrics = self.host.handed_sockets()
        socks = listeners + ([metrics] if metrics is not None else [])
        wire.give(peer_socket(), [s.fileno() for s in socks])
        carried = self.host.carried(list(range(len(listeners))), metrics is not None)
        return {"carried": encode(carried)}

    def taken(self, _args: Args) -> dict[str, Any]:
        """``takeover.done``: the new process serves."""
        self._from_child()
        assert self.child is not None and self.outcome is not None     # checked
        if not self.outcome.done():
            self.outcome.set_result(None)
            log.info("upgrade: the new process serves; draining", new_pid=self.child.pid)
            self.host.retire(self.child.pid)     # MAINPID= before the new one's READY=1
        return {"draining": os.getpid()}

    def _from_child(self) -> None:
        if self.child is None or peer_pid() != self.child.pid:
            raise AdminError("forbidden", "only the process started by lbctl upgrade "
                                          "may take this balancer over")


def successor_argv(argv: list[str], path: str) -> list[str] | None:
    """This process's command line with the configuration file ``path``; None
    when it names none (not started by ``lbctl run -c``)."""
    out, skip, named = [], False, False
    for arg in argv:
        if skip:
            out.append(path)
            skip = False
        elif arg in ("-c", "--config"):
            out.append(arg)
            skip = named = True
        elif arg.startswith("--config="):
            out.append(f"--config={path}")
            named = True
        else:
            out.append(arg)
    return out if named else None
