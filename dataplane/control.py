"""The control process: it owns the configuration and the listeners, forks the
workers, restarts the ones that die, sends them state and gathers what they
report. It never proxies.

Each worker slot has its own SO_REUSEPORT listener, created here before the
first fork and kept open here: a replacement worker inherits the very same
socket, so connections queued on it while its worker was down are served, not
reset. Each worker incarnation gets a fresh pair of rings (channel.Link).

Workers get SIGTERM when the control process dies (PR_SET_PDEATHSIG), so a
crashed control process leaves no unsupervised workers behind.

Signals: SIGTERM/SIGINT drain the workers (each finishes in-flight requests
within ``timeouts.shutdown``) and exit 0; SIGHUP reloads the file. A worker
that dies is restarted after a backoff (0.1 s doubling to 5 s while it keeps
dying within START_GRACE of its start); after MAX_START_FAILURES such deaths
in a row the control process stops everything and exits 1.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import time

import structlog

from . import logs
from .admin import AdminError, AdminServer
from .admin_commands import admin_commands
from .channel import STATE_WAIT, Ack, BackendState, Counters, Link, Outcomes, Snapshot
from .config import Config, ConfigError, load
from .congestion import Congestion
from .tally import Tally
from .worker import listen

log = structlog.get_logger("l7lb.control")

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
START_GRACE = 1.0
MAX_START_FAILURES = 5
KILL_MARGIN = 5.0     # seconds past the shutdown grace before SIGKILL
FLUSH_EVERY = 0.25    # seconds between log flushes
RESTART_ONLY = ("balancer", "pool", "timeouts", "limits", "log", "admin", "congestion")


def states_of(config: Config, previous: list[BackendState] = ()) -> list[BackendState]:
    """Backend states from a file; a backend already known keeps its admin state."""
    kept = {(s.host, s.port): s.state for s in previous}
    return [BackendState(b.host, b.port, b.weight, kept.get((b.host, b.port), "ready"),
                         Congestion.effective(b.congestion_control), b.client_side,
                         b.congestion_control or "")
            for b in config.backends]


class Slot:
    def __init__(self, index: int, listener: socket.socket) -> None:
        self.index = index
        self.listener = listener
        self.link: Link | None = None
        self.pid = 0
        self.pidfd = -1
        self.started = 0.0
        self.failures = 0
        self.version = 0          # last state acknowledged
        self.counters: Counters | None = None


class Control:
    def __init__(self, config: Config, path: str | None) -> None:
        self.config = config
        self.path = path
        self.slots: list[Slot] = []
        self.version = 1
        self.congestion = Congestion(config)
        self.states: list[BackendState] = []
        self.snapshot = Snapshot(self.version, self.states)
        self.sent_at: dict[int, float] = {}
        self.started = time.time()
        self.admin: AdminServer | None = None
        self.stopping = False
        self.exit_code = 0
        self.tally = Tally()

    # -- running ---------------------------------------------------------
    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        count = self.config.balancer.worker_count()
        try:
            self.slots = [Slot(i, listen(self.config)) for i in range(count)]
        except OSError as exc:
            log.error("cannot listen", error=exc.strerror or str(exc),
                      address=self.config.balancer.bind, port=self.config.balancer.port)
            return 1
        try:
            self.admin = AdminServer(self.config.admin.socket, self.config.admin.mode,
                                     admin_commands(self), self.config.admin.group)
            await self.admin.start()
        except KeyError:
            log.error("cannot open the admin socket", error=f"no group {self.config.admin.group}")
            for slot in self.slots:
                slot.listener.close()
            return 1
        except (AdminError, OSError) as exc:
            log.error("cannot open the admin socket", path=self.config.admin.socket,
                      error=getattr(exc, "message", None) or str(exc))
            for slot in self.slots:
                slot.listener.close()
            return 1
        self.congestion.start()      # before the first snapshot: it names algorithms
        self.states = states_of(self.config)
        self.snapshot = Snapshot(self.version, self.states)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop)
        self.loop.add_signal_handler(signal.SIGHUP, self._reload_signal)
        log.info("listening", address=self.config.balancer.bind, port=self.config.balancer.port,
                 mode=self.config.balancer.mode, workers=count)
        self.sent_at[self.version] = time.monotonic()
        for slot in self.slots:
            self.spawn(slot)
        if self.config.log.summary:
            self.loop.call_later(self.config.log.summary, self.summarise)
        self._flush_logs()
        try:
            await self.done
        finally:
            self.congestion.stop()
        self.admin.close()
        for slot in self.slots:
            slot.listener.close()
        log.info("stopped", code=self.exit_code)
        return self.exit_code

    def _flush_logs(self) -> None:
        logs.flush()
        if not self.done.done():
            self.loop.call_later(FLUSH_EVERY, self._flush_logs)

    def spawn(self, slot: Slot) -> None:
        if self.stopping:
            return
        slot.link = Link(slot.index)
        slot.link.down.send(self.snapshot, wait=STATE_WAIT)
        logs.flush()          # the child would write our buffered lines again
        control_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._become_worker(slot, control_pid)
        slot.pid, slot.started, slot.version = pid, time.monotonic(), 0
        slot.pidfd = os.pidfd_open(pid)
        self.loop.add_reader(slot.pidfd, self.reap, slot)
        slot.link.up.listen(self.loop, self.on_message)
        log.info("worker started", slot=slot.index, worker_pid=pid)

    def _become_worker(self, slot: Slot, control_pid: int) -> None:
        """In the child: drop what belongs to the control process, run, exit."""
        from .serve import run_worker
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            # A control process killed outright takes its workers along (they
            # drain as on SIGTERM) instead of leaving them serving unsupervised.
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != control_pid:
                os._exit(1)       # it died before prctl took effect
            signal.signal(signal.SIGHUP, signal.SIG_IGN)   # reload is the control's job
            for other in self.slots:
                if other is not slot:
                    other.listener.close()
            code = run_worker(self.config, slot.listener, slot.link)
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
        slot.link.up.drain()
        slot.link.close()
        slot.link = None
        ran = time.monotonic() - slot.started
        slot.pid = 0
        if self.stopping:
            log.info("worker stopped", slot=slot.index, code=code)
            if not any(s.pid for s in self.slots) and not self.done.done():
                self.done.set_result(None)
            return
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        slot.failures = slot.failures + 1 if ran < START_GRACE else 0
        log.error("worker died", slot=slot.index, reason=how, ran_s=round(ran, 3))
        if slot.failures >= MAX_START_FAILURES:
            log.error("workers keep dying at start, giving up", reason=how,
                      attempts=slot.failures)
            self.stop(exit_code=1)
            return
        delay = min(0.1 * 2 ** slot.failures, 5.0)
        self.loop.call_later(delay, self.spawn, slot)

    def stop(self, exit_code: int = 0) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.exit_code = exit_code
        log.info("stopping", grace=self.config.timeouts.shutdown)
        for slot in self.slots:
            if slot.pid:
                os.kill(slot.pid, signal.SIGTERM)
        if not any(s.pid for s in self.slots):
            self.done.set_result(None)
            return
        self.loop.call_later(self.config.timeouts.shutdown + KILL_MARGIN, self._kill_stragglers)

    def _kill_stragglers(self) -> None:
        for slot in self.slots:
            if slot.pid:
                log.warning("worker did not stop in time, killing", slot=slot.index)
                os.kill(slot.pid, signal.SIGKILL)

    # -- state down, reports up -----------------------------------------
    def _reload_signal(self) -> None:
        try:
            self.reload()
        except AdminError as exc:
            log.error("reload rejected, keeping the running configuration", error=exc.message)

    def reload(self, path: str | None = None) -> dict:
        """Validate the file, then apply its backends to every worker (SIGHUP and
        ``lbctl reload``); raises AdminError and changes nothing when it is bad."""
        path = path or self.path
        if path is None:
            raise AdminError("no_file", "this balancer was started without a configuration file")
        try:
            config = load(path)
        except ConfigError as exc:
            raise AdminError("invalid_config", str(exc)) from None
        ignored = [key for key in RESTART_ONLY
                   if getattr(config, key) != getattr(self.config, key)]
        if ignored:
            log.warning("reload: these sections need a restart and were not applied",
                        sections=ignored)
        self.config.backends = config.backends
        self.publish(states_of(config, self.states))
        log.info("reload sent", version=self.version, backends=len(config.backends))
        return {"version": self.version, "backends": len(config.backends),
                "not_applied": ignored}

    def publish(self, states: list[BackendState]) -> None:
        """Send a new backend set to every worker as the next snapshot version."""
        before = {(s.host, s.port): s.state for s in self.states}
        for state in states:
            if before.get((state.host, state.port)) != state.state:
                self.tally.backend(f"{state.host}:{state.port}").state_changed = time.time()
        self.states = states
        self.version += 1
        self.snapshot = Snapshot(self.version, states)
        self.sent_at[self.version] = time.monotonic()
        for slot in self.slots:
            if slot.link is not None:
                slot.link.down.send(self.snapshot, wait=STATE_WAIT)

    def on_message(self, message: object) -> None:
        if isinstance(message, Outcomes):
            self.tally.outcomes(message.records)
        elif isinstance(message, Counters):
            self.slots[message.slot].counters = message
            sessions = sum(r.open for r in self.reports())
            self.tally.max_sessions = max(self.tally.max_sessions, sessions)
        elif isinstance(message, Ack):
            self._acked(message)

    def _acked(self, ack: Ack) -> None:
        slot = self.slots[ack.slot]
        if slot.pid != ack.pid:
            return     # from a worker already replaced
        slot.version = ack.version
        live = [s for s in self.slots if s.pid]
        if all(s.version >= ack.version for s in live) and ack.version in self.sent_at:
            ms = (time.monotonic() - self.sent_at.pop(ack.version)) * 1000
            log.info("state applied", version=ack.version, workers=len(live), ms=round(ms, 2))

    def reports(self) -> list[Counters]:
        """The latest counters of each live worker."""
        return [s.counters for s in self.slots
                if s.counters is not None and s.pid and s.counters.pid == s.pid]

    def summarise(self) -> None:
        """Until the admin socket exists, this line is how operators see the workers."""
        workers = {}
        for slot in self.slots:
            c = slot.counters
            if c is not None and slot.pid == c.pid:
                workers[str(c.pid)] = {"slot": slot.index, "connections": c.connections,
                                       "open": c.open, "dropped": c.dropped}
        backends = {name: {"requests": t.requests, "errors": t.errors}
                    for name, t in self.tally.backends.items()}
        log.info("summary", workers=workers, backends=backends)
        if not self.stopping:
            self.loop.call_later(self.config.log.summary, self.summarise)
