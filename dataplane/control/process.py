"""The control process: owns the configuration and the listeners, runs the
supervisor (worker processes) and the state holder (snapshots), serves the
admin socket and gathers what the workers report. It never proxies.

Signals: SIGTERM/SIGINT drain the workers (each finishes in-flight requests
within ``timeouts.shutdown``) and exit 0; SIGHUP reloads the file; SIGUSR1
reopens ``log.file`` here and in every worker (logrotate); SIGUSR2 upgrades
(upgrade.py). Workers that keep dying at start make it stop everything and
exit 1. At its start it takes over from the process that started it for an
upgrade, or from orphaned workers (takeover.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import msgspec
import structlog

from .. import logs
from ..channel.messages import Ack, Counters, Snapshot, Spans, Trial, Tripped, PassiveVerdict
from ..config import DEFAULT, Config, ConfigError, GroupSettings, backend_key, load
from ..handover.wire import TakeoverError
from ..io.listener import bound, open_listeners
from ..upstream.outcome import ErrorKind
from .admin import AdminError, AdminServer
from .breakers import BreakerBoard
from .cc_auto import AutoCongestion
from .certificates import CertificateError
from .listener_tls import ListenerTls
from .commands import admin_commands
from .congestion import Congestion
from .counters import Tally
from .fleet import FleetLink
from .health import HealthMonitor
from .metrics import Metrics
from .notify import Notifier
from .state import State
from .succession import Succession
from .supervisor import Supervisor
from .traces import TraceExport, TracingUnavailable

NO_ERROR = ErrorKind.NONE

log = structlog.get_logger("l7lb.control")

FLUSH_EVERY = 0.25    # seconds between log flushes
RESTART_ONLY = ("balancer", "pool", "timeouts", "limits", "log", "admin", "congestion",
                "fleet", "metrics", "request_id", "tracing")


class Control:
    def __init__(self, config: Config, path: str | None) -> None:
        self.config = config
        self.path = path
        self.congestion = Congestion(config)
        self.tls = ListenerTls(config)
        self.state = State()
        self.state.on_publish(self._sent)
        self.cc_auto = AutoCongestion(config.congestion.auto, self.state, self.reports)
        self.health = HealthMonitor(config, self.state)
        self.fleet = (FleetLink(config, self.state, self.health, self.congestion)
                      if config.fleet is not None else None)
        timeouts = config.timeouts
        self.breakers = BreakerBoard(config, self.state, self._live_slots,
                                     timeouts.connect + timeouts.request + 1.0)
        self.sent_at: dict[int, float] = {}
        self.started = time.time()
        self.admin: AdminServer | None = None
        self.supervisor: Supervisor | None = None
        self.exit_code = 0
        self.tally = Tally()
        self.reloads = 0
        self.notify = Notifier()
        self.metrics = Metrics(self) if config.metrics.listen else None
        self.traces: TraceExport | None = None     # tracing.enabled: made as it starts

    @property
    def running(self) -> Supervisor:
        """The workers' supervisor, made by run() before anything asks for it."""
        if self.supervisor is None:
            raise RuntimeError("the balancer is not running yet")
        return self.supervisor

    # -- running ---------------------------------------------------------
    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        settings = self.config.balancer
        count = settings.worker_count()
        self.succession = succession = Succession(self, self.loop)
        try:
            takeover = succession.begin()
        except TakeoverError as exc:
            return succession.failed(f"cannot take over: {exc}")
        handed = takeover.listeners_for(f"{settings.bind}:{settings.port}") if takeover else []
        try:
            listeners = handed + [bound(settings.bind, settings.port)
                                  for _ in range(count - len(handed))]
        except OSError as exc:
            return succession.failed(f"cannot listen on {settings.bind}:{settings.port}: "
                                f"{exc.strerror or exc}")
        self.supervisor = Supervisor(self.config, self.loop, listeners, count,
                                     lambda: self.state.snapshot, self.on_message,
                                     succession.give_up, self._all_stopped, self.tls.front)
        if takeover is not None:
            self.supervisor.patience = 1       # a worker that dies at start fails it
        self.state.on_publish(self.supervisor.send)
        certificates = await self._prepare()
        if certificates is None:
            return succession.failed("cannot start (see the log above)")
        # Only now: a client that can connect finds the admin socket there too.
        open_listeners(listeners)
        self.congestion.start(self.loop)    # before the first snapshot: it names algorithms
        self.tls.start(self.state, self.loop)    # so are the session ticket keys
        self.state.start(self.config, certificates)
        self.health.start(self.loop)
        self.breakers.start(self.loop)
        self.cc_auto.start(self.loop)
        succession.adopt()
        if self.fleet is not None:
            self.fleet.start(self.loop)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop)
        self.loop.add_signal_handler(signal.SIGHUP, self._reload_signal)
        self.loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        self.loop.add_signal_handler(signal.SIGUSR2, succession.upgrade.on_signal)
        log.info("listening", address=settings.bind, port=settings.port,
                 mode=settings.mode, workers=count)
        self._sent(self.state.snapshot)
        self.supervisor.start()
        self.notify.start_watchdog(self.loop)
        if self.config.log.summary:
            self.loop.call_later(self.config.log.summary, self.summarise)
        self._flush_logs()
        try:
            await self.done
        finally:
            self.health.stop()
            self.cc_auto.stop()
            self.congestion.stop()
            if self.fleet is not None:
                await self.fleet.stop(leave=not succession.successor)   # else it goes on
        self._close()
        log.info("stopped", code=self.exit_code)
        return self.exit_code

    async def _prepare(self) -> bytes | None:
        """Admin socket, metrics listener and certificates, before listening;
        None (logged, all closed again) when one of them fails."""
        takeover = self.succession.takeover
        handed = takeover.metrics if takeover is not None else None
        try:
            if self.config.tracing.enabled:
                self.traces = TraceExport(self.config.tracing)
            if await self._open_admin() and (self.metrics is None
                                             or await self.metrics.start(handed)):
                return self.tls.copy(self.config)    # a client's first handshake needs them
        except CertificateError as exc:
            log.error("cannot load the listener's certificates", error=str(exc))
        except TracingUnavailable as exc:
            log.error(str(exc))
        self._close()
        return None

    def _close(self) -> None:
        for part in (self.admin, self.metrics, self.supervisor, self.tls, self.traces):
            if part is not None:
                part.close()

    async def _open_admin(self) -> bool:
        admin = self.config.admin
        commands = {**admin_commands(self), **self.succession.upgrade.commands()}
        try:
            self.admin = AdminServer(admin.socket, admin.mode, commands, admin.group)
            await self.admin.start(beside=self.succession.beside)
        except KeyError:
            log.error("cannot open the admin socket", error=f"no group {admin.group}")
            return False
        except (AdminError, OSError) as exc:
            log.error("cannot open the admin socket", path=admin.socket,
                      error=getattr(exc, "message", None) or str(exc))
            return False
        return True

    def _flush_logs(self) -> None:
        logs.flush()
        if not self.done.done():
            self.loop.call_later(FLUSH_EVERY, self._flush_logs)

    def stop(self, exit_code: int = 0) -> None:
        if self.running.stopping:
            return
        self.notify.stopping()
        self.exit_code = exit_code
        log.info("stopping", grace=self.config.timeouts.shutdown)
        self.running.stop()

    def lineage(self) -> dict[str, Any]:
        return self.succession.lineage()

    def _all_stopped(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    # -- state down, reports up -----------------------------------------
    def _reload_signal(self) -> None:
        self.notify.reloading()
        try:
            self.reload()
        except AdminError as exc:
            log.error("reload rejected, keeping the running configuration", error=exc.message)
        self.notify.ready(self._status())

    def _reopen_logs(self) -> None:
        logs.reopen()
        self.running.send_signal(signal.SIGUSR1)

    def reload(self, path: str | None = None) -> dict[str, Any]:
        """Validate the file, then apply its backends to every worker (SIGHUP and
        ``lbctl reload``); raises AdminError and changes nothing when it is bad."""
        path = path or self.path
        if path is None:
            raise AdminError("no_file", "this balancer was started without a configuration file")
        try:
            config = load(path)
            certificates = self.tls.copy(config)
        except (ConfigError, CertificateError) as exc:
            raise AdminError("invalid_config", str(exc)) from None
        ignored = [key for key in RESTART_ONLY
                   if _restart_part(config, key) != _restart_part(self.config, key)]
        if set(config.clusters) != set(self.config.clusters):
            ignored.append("clusters")        # groups added or removed: restart
            if {r.cluster for r in config.routes} - {None, DEFAULT, *self.config.clusters}:
                ignored.append("routes")      # they name a group the workers lack
                config.routes, config.routes_default = (self.config.routes,
                                                        self.config.routes_default)
        else:
            if any(_settings(group) != _settings(self.config.clusters[name])
                   for name, group in config.clusters.items()):
                ignored.append("clusters")    # a group's settings (protocol, pool...): restart
            if self.fleet is None:            # each group's backends; its settings stay
                for name, group in config.clusters.items():
                    self.config.clusters[name].backends = group.backends
        config.clusters = self.config.clusters
        if self.fleet is not None:            # the fleet's set (etcd) is in force, not the file's
            ignored.append("backends")
        if ignored:
            log.warning("reload: these sections need a restart (backends in a fleet: lbctl "
                        "backend) and were not applied", sections=ignored)
        self.config.routes, self.config.routes_default = config.routes, config.routes_default
        if self.fleet is not None:
            self.state.load_routes(config, certificates)
        else:
            self.config.backends = config.backends
            self.state.load(config, certificates)
        self.reloads += 1
        log.info("reload sent", version=self.state.version, backends=len(self.state.backends))
        return {"version": self.state.version, "backends": len(self.state.backends),
                "not_applied": ignored}

    def _sent(self, snapshot: Snapshot) -> None:
        self.sent_at[snapshot.version] = time.monotonic()

    def on_message(self, message: object) -> None:
        if isinstance(message, PassiveVerdict):
            self.health.passive_down(backend_key(message.cluster, message.backend),
                                     f"passive: {message.reason}")
        elif isinstance(message, Tripped):
            self.breakers.tripped(message)
        elif isinstance(message, Trial):
            self.breakers.trial(message)
        elif isinstance(message, Counters):
            self.running.slots[message.slot].counters = message
            for name in self.tally.add(message):
                self.health.alive(name)
            self.breakers.calls(message.calls)
            sessions = sum(r.open for r in self.reports())
            self.tally.max_sessions = max(self.tally.max_sessions, sessions)
        elif isinstance(message, Ack):
            self._acked(message)
        elif isinstance(message, Spans) and self.traces is not None:
            self.traces.add(message)

    def _acked(self, ack: Ack) -> None:
        slot = self.running.slots[ack.slot]
        if slot.pid != ack.pid:
            return     # from a worker already replaced
        slot.version = ack.version
        self.breakers.acked(ack.slot, ack.version)
        live = self.running.live()
        if not self.notify.ready_sent and len(live) == len(self.running.slots) \
                and all(s.version for s in live):
            self.succession.serving()
            self.notify.ready(self._status())        # every worker has its first state
        if all(s.version >= ack.version for s in live) and ack.version in self.sent_at:
            ms = (time.monotonic() - self.sent_at.pop(ack.version)) * 1000
            log.info("state applied", version=ack.version, workers=len(live), ms=round(ms, 2))

    def _status(self) -> str:
        settings = self.config.balancer
        return (f"serving {settings.mode} on {settings.bind}:{settings.port}, "
                f"{len(self.running.live())} workers, {len(self.state.backends)} backends, "
                f"state version {self.state.version}")

    def _live_slots(self) -> list[int]:
        return [s.index for s in self.running.live()] if self.supervisor else []

    def reports(self) -> list[Counters]:
        """The latest counters of each live worker."""
        return [s.counters for s in self.running.live()
                if s.counters is not None and s.counters.pid == s.pid]

    def summarise(self) -> None:
        """A periodic log line with what the workers report (``log.summary``)."""
        workers = {str(c.pid): {"slot": c.slot, "connections": c.connections,
                                "open": c.open, "dropped": c.dropped}
                   for c in self.reports()}
        backends = {name: {"requests": t.requests, "errors": t.errors}
                    for name, t in self.tally.backends.items()}
        log.info("summary", workers=workers, backends=backends)
        if not self.running.stopping:
            self.loop.call_later(self.config.log.summary, self.summarise)


def _settings(group: GroupSettings) -> GroupSettings:
    """A group but for its backends (what a reload cannot change)."""
    return msgspec.structs.replace(group, backends=[])


def _restart_part(config: Config, key: str) -> object:
    """What of a section a reload cannot apply: all of it, but the listener's
    certificate files (read again by every reload)."""
    section = getattr(config, key)
    if key == "balancer" and section.tls is not None:
        return msgspec.structs.replace(
            section, tls=msgspec.structs.replace(section.tls, certificates=[]))
    return section
