"""Worker processes: forking them, reaping them, restarting the ones that die,
stopping them all.

Each worker slot has its own SO_REUSEPORT listener, created before the first
fork and kept open here: a replacement worker inherits the very same socket,
so connections queued on it while its worker was down are served, not reset.
Listeners handed over by an upgrade beyond this process's slot count stay
open too, each served by one slot's worker beside its own (never closed with
connections in their queues).
Each worker incarnation gets a fresh pair of rings (channel.link.Link) and the
current snapshot before it starts.

Workers get SIGUSR2 when the control process dies (PR_SET_PDEATHSIG): they
serve on for ``timeouts.orphan``, open to a takeover by a new control
process, then drain and exit (worker/orphan.py). A worker that
dies is restarted after a backoff (0.1 s doubling to 5 s while it keeps dying
within START_GRACE of its start); after ``patience`` such deaths in a row
(MAX_START_FAILURES; 1 while an upgrade's new process starts) the supervisor
gives up (``on_give_up``).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import stat
import socket
import ssl
import time
from typing import Callable

import structlog

from .. import logs
from ..channel.link import STATE_WAIT, Link
from ..channel.messages import Counters, Snapshot
from ..config import Config
from ..handover.wire import REPORT_FD
from ..limits.per_client import PerClient
from ..worker.run import run_worker

log = structlog.get_logger("l7lb.control")

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
START_GRACE = 1.0
MAX_START_FAILURES = 5
KILL_MARGIN = 5.0     # seconds past the shutdown grace before SIGKILL


class Slot:
    def __init__(self, index: int, listeners: list[socket.socket]) -> None:
        self.index = index
        self.listeners = listeners
        self.link: Link | None = None
        self.pid = 0
        self.pidfd = -1
        self.started = 0.0
        self.failures = 0
        self.version = 0          # last state acknowledged
        self.counters: Counters | None = None

    def state(self, stopping: bool) -> str:
        """One word for lbctl status: restarting (no process now), starting
        (its first state not yet applied), serving, or draining (stopping)."""
        if not self.pid:
            return "restarting"
        if stopping:
            return "draining"
        return "serving" if self.version else "starting"


class Supervisor:
    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop,
                 listeners: list[socket.socket], count: int, snapshot: Callable[[], Snapshot],
                 on_message: Callable[[object], None],
                 on_give_up: Callable[[], None], on_all_stopped: Callable[[], None],
                 tls_front: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.tls_front = tls_front      # inherited by every worker (tls/contexts.py)
        self.client_counts = PerClient.shared_buffer(config)   # shared by every worker
        self.restarts = 0               # workers that died and were replaced
        self.loop = loop
        self.slots = [Slot(i, listeners[i::count]) for i in range(count)]
        self.patience = MAX_START_FAILURES
        self.why = ""                   # the last worker death, for on_give_up
        self.snapshot = snapshot
        self.on_message = on_message
        self.on_give_up = on_give_up
        self.on_all_stopped = on_all_stopped
        self.stopping = False

    def start(self) -> None:
        for slot in self.slots:
            self.spawn(slot)

    def live(self) -> list[Slot]:
        return [s for s in self.slots if s.pid]

    def send(self, snapshot: Snapshot) -> None:
        for slot in self.slots:
            if slot.link is not None:
                slot.link.down.send(snapshot, wait=STATE_WAIT)

    def spawn(self, slot: Slot) -> None:
        if self.stopping:
            return
        link = slot.link = Link(slot.index)
        link.down.send(self.snapshot(), wait=STATE_WAIT)
        logs.flush()          # the child would write our buffered lines again
        control_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._become_worker(slot, link, control_pid)
        slot.pid, slot.started, slot.version = pid, time.monotonic(), 0
        slot.pidfd = os.pidfd_open(pid)
        self.loop.add_reader(slot.pidfd, self.reap, slot)
        link.up.listen(self.loop, self.on_message)
        log.info("worker started", slot=slot.index, worker_pid=pid)

    def _become_worker(self, slot: Slot, link: Link, control_pid: int) -> None:
        """In the child: drop what belongs to the control process, run, exit."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            # A control process killed outright leaves orphans that serve on for
            # a while, open to a takeover (worker/orphan.py), then drain.
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)   # until the worker's loop listens
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGUSR2)
            if os.getppid() != control_pid:
                os._exit(1)       # it died before prctl took effect
            signal.signal(signal.SIGHUP, signal.SIG_IGN)   # reload is the control's job
            for other in self.slots:
                if other is not slot:
                    for listener in other.listeners:
                        listener.close()
                    if other.link is not None:
                        other.link.forget()
                    if other.pid:
                        os.close(other.pidfd)      # the control's watch on that sibling
            _drop_inherited_sockets(keep={sock.fileno() for sock in slot.listeners})
            code = run_worker(self.config, slot.listeners, link, self.tls_front,
                              self.client_counts)
        except BaseException as exc:  # noqa: BLE001 - report anything, then leave
            log.error("worker failed", error=repr(exc), exc_info=True)
        finally:
            logs.flush()
            os._exit(code)

    def reap(self, slot: Slot) -> None:
        self.loop.remove_reader(slot.pidfd)
        os.close(slot.pidfd)
        _, status = os.waitpid(slot.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if slot.link is not None:      # a live slot has one
            slot.link.up.drain()
            slot.link.close()
        slot.link = None
        ran = time.monotonic() - slot.started
        slot.pid = 0
        if self.stopping:
            log.info("worker stopped", slot=slot.index, code=code)
            if not self.live():
                self.on_all_stopped()
            return
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        slot.failures = slot.failures + 1 if ran < START_GRACE else 0
        log.error("worker died", slot=slot.index, reason=how, ran_s=round(ran, 3))
        self.why = f"worker {slot.index} died {ran:.1f}s after its start ({how})"
        if slot.failures >= self.patience:
            log.error("workers keep dying at start, giving up", reason=how,
                      attempts=slot.failures)
            self.on_give_up()
            return
        delay = min(0.1 * 2 ** slot.failures, 5.0)
        self.restarts += 1
        self.loop.call_later(delay, self.spawn, slot)

    def send_signal(self, signum: int) -> None:
        for slot in self.live():
            os.kill(slot.pid, signum)

    def stop(self) -> None:
        """SIGTERM every worker (they drain), SIGKILL the ones still there after
        the shutdown grace; ``on_all_stopped`` once none is left."""
        self.stopping = True
        self.send_signal(signal.SIGTERM)
        if not self.live():
            self.on_all_stopped()
            return
        self.loop.call_later(self.config.timeouts.shutdown + KILL_MARGIN, self._kill_stragglers)

    def _kill_stragglers(self) -> None:
        for slot in self.live():
            log.warning("worker did not stop in time, killing", slot=slot.index)
            os.kill(slot.pid, signal.SIGKILL)

    def close(self) -> None:
        for slot in self.slots:
            for listener in slot.listeners:
                listener.close()

    def listeners(self) -> list[socket.socket]:
        """Every listener, in the order a successor deals them out again."""
        by_slot = [slot.listeners for slot in self.slots]
        return [row[k] for k in range(max(map(len, by_slot))) for row in by_slot if k < len(row)]


def _drop_inherited_sockets(keep: set[int]) -> None:
    """In a new worker: let go of the control process's sockets (admin clients,
    probes, etcd's watch stream) and of an upgrade's report pipe, which would
    otherwise stay open for as long as the worker lives. Each is replaced by
    /dev/null rather than closed: the control's objects still name those
    numbers, and one of them closing its number later must not close a socket
    the worker has opened since."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    report = os.environ.pop(REPORT_FD, "")
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd != null and fd not in keep and (_is_socket(fd) or name == report):
                os.dup2(null, fd)
    finally:
        os.close(null)


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
