"""Taking a running balancer over, in a control process that starts
(docs/process.md): from the control process that started it for an upgrade
(``L7LB_TAKEOVER`` names its admin socket), or else from workers orphaned by
a control process that died (each listens on ADMIN_SOCKET.orphan-PID, see
worker/orphan.py). Either hands over its listening sockets and what it
carries; once this process's workers serve, ``done`` tells them to drain.
An upgrade that fails says why on the pipe ``L7LB_UPGRADE_FD``."""

from __future__ import annotations

import glob
import os
import socket

import structlog

from ..handover.carried import Carried
from ..handover.wire import ORPHAN, REPORT_FD, TAKEOVER_FROM, Giver, TakeoverError

log = structlog.get_logger("l7lb.upgrade")


class Takeover:
    def __init__(self, taken: list[tuple[Giver, list[socket.socket], Carried]],
                 upgrade: bool) -> None:
        self.givers = [giver for giver, _, _ in taken]
        self.upgrade = upgrade                 # from a live control process
        self.carried = taken[0][2]
        self.pids = [carried.pid for _, _, carried in taken]
        ordered: list[tuple[int, int, socket.socket]] = []
        self.metrics: socket.socket | None = None
        for _, socks, carried in taken:
            if carried.metrics:
                self.metrics = socks.pop()
            ordered += [(slot, len(ordered), sock) for slot, sock in zip(carried.slots, socks)]
        self.listeners = [sock for _, _, sock in sorted(ordered, key=lambda o: o[:2])]

    @classmethod
    def find(cls, admin_path: str) -> "Takeover | None":
        """From the process that started this one, or from orphaned workers;
        None when there is nothing to take over. TakeoverError: an upgrade's
        giver could not be reached."""
        path = os.environ.pop(TAKEOVER_FROM, None)
        if path is not None:
            giver = Giver(path)
            try:
                return cls([(giver, *giver.take())], upgrade=True)
            except TakeoverError:
                giver.close()
                raise
        taken = [got for path in sorted(glob.glob(glob.escape(admin_path) + ORPHAN + "*"))
                 if (got := _from_orphan(path)) is not None]
        return cls(taken, upgrade=False) if taken else None

    def listeners_for(self, address: str) -> list[socket.socket]:
        """The sockets handed over, if bound where this configuration listens."""
        if self.carried.address == address:
            return self.listeners
        log.warning("the listening address changed: the old one closes when the "
                    "process taken over stops", old=self.carried.address, new=address)
        for sock in self.listeners:
            sock.close()
        return []

    def done(self) -> None:
        """Every worker of this process serves: the givers drain and exit."""
        for giver in self.givers:
            try:
                giver.done()
            except TakeoverError as exc:
                log.warning("a process taken over did not answer", error=str(exc))
        _close_report()
        log.info("took over", pids=self.pids, upgrade=self.upgrade)

    def close(self) -> None:
        """Give up: the givers keep serving."""
        for giver in self.givers:
            giver.close()


def _from_orphan(path: str) -> tuple[Giver, list[socket.socket], Carried] | None:
    try:
        giver = Giver(path)
    except TakeoverError:
        try:
            os.unlink(path)             # its worker is gone
        except OSError:
            pass
        return None
    try:
        return giver, *giver.take()
    except TakeoverError as exc:
        log.warning("an orphaned worker could not be taken over", path=path, error=str(exc))
        giver.close()
        return None


def report_failure(reason: str) -> None:
    """Tell the process that started this one why it did not take over."""
    fd = os.environ.get(REPORT_FD)
    if fd is not None and fd.isdigit():
        try:
            os.write(int(fd), reason.encode()[:4000])
        except OSError:
            pass
    _close_report()


def _close_report() -> None:
    fd = os.environ.pop(REPORT_FD, None)
    if fd is not None and fd.isdigit():
        try:
            os.close(int(fd))
        except OSError:
            pass
