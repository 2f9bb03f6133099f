"""This balancer as a member of the fleet: a lease and a member key in etcd,
one watch over the fleet's prefix that keeps the view and the backend set
current, and the observations it publishes as a prober.

Modes: ``joining`` (not yet reached etcd), ``ok``, ``degraded`` (no lease
renewed for ``lease_ttl``: the control process then probes every backend
itself and trusts only its own evidence). Any failure ends the session; the
next one grants a lease (or keeps the old one if it still lives), reads the
whole prefix again and watches from there: a watch that fell behind etcd's
compaction resynchronises the same way.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any, Callable, NamedTuple

import structlog

from ..config.schema import FleetSettings
from .etcd import Etcd, EtcdError, KeyValue, delete_op, put_op, unchanged_since
from .keys import Layout
from .view import FleetView, Observation

log = structlog.get_logger("l7lb.fleet")

RETRY = 0.5            # seconds between attempts to reach etcd
APPLIED_WAIT = 2.0     # a backend change must come back through the watch within this
TXN_OPS = 128          # etcd's default --max-txn-ops


class Conflict(Exception):
    """The backend changed in etcd since this member last saw it."""


class Hooks(NamedTuple):
    view_changed: Callable[[set[str] | None], None]   # backends observed anew; None: members
    backends_changed: Callable[[], None]      # the fleet's backend set
    mode_changed: Callable[[str], None]
    seed: Callable[[], dict[tuple[str, str], dict[str, Any]]]   # the file's backends, for an empty fleet


class FleetMember:
    def __init__(self, settings: FleetSettings, name: str, etcd: Etcd, hooks: Hooks) -> None:
        self.settings = settings
        self.name = name
        self.etcd = etcd
        self.hooks = hooks
        self.layout = Layout(settings.prefix)
        self.view = FleetView(name, settings.probe_replicas)
        # (group, HOST:PORT) -> (fleet-wide fields, mod_revision)
        self.backends: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
        self.backends_seen = asyncio.Event()
        self.mode = "joining"
        self.error = ""                   # the last reason etcd could not be used
        self.lease = 0
        self.started = self.last_ok = time.monotonic()
        self.own: dict[str, Observation | None] = {}   # to publish (None: withdraw)
        self.unsent: set[str] = set()
        self.wake = asyncio.Event()
        self.writes = 0
        self.task: asyncio.Task[None] | None = None
        self.watchdog: asyncio.TimerHandle | None = None

    # -- running ---------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.task = loop.create_task(self._run())
        self._check()

    async def stop(self, leave: bool = True) -> None:
        """Leave: the member key and observations go with the lease at once
        (not when ``leave`` is False: a successor keeps the lease alive)."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.task is not None:
            self.task.cancel()
        if leave and self.lease and self.mode == "ok":
            try:
                await asyncio.wait_for(self.etcd.revoke(self.lease), self.settings.timeout)
            except (EtcdError, asyncio.TimeoutError):
                pass
        await self.etcd.close()

    def _check(self) -> None:
        """Degraded once no lease was renewed for lease_ttl."""
        ttl = self.settings.lease_ttl
        if self.mode != "degraded" and time.monotonic() - self.last_ok > ttl:
            log.warning("fleet degraded: etcd unreachable; probing every backend here",
                        error=self.error, after_s=round(time.monotonic() - self.last_ok, 2))
            self._set_mode("degraded")
        self.watchdog = self.loop.call_later(min(0.1, ttl / 10), self._check)

    def _set_mode(self, mode: str) -> None:
        if mode != self.mode:
            self.mode = mode
            self.hooks.mode_changed(mode)

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except EtcdError as exc:
                self.error = str(exc)
            except Exception:       # a bug must not end fleet membership for good
                log.exception("fleet session failed")
            await asyncio.sleep(RETRY)

    async def _session(self) -> None:
        etcd, ttl = self.etcd, math.ceil(self.settings.lease_ttl)
        if not self.lease or await etcd.keep_alive(self.lease) == 0:
            self.lease = await etcd.grant(ttl)
        await etcd.put(self.layout.member(self.name),
                       json.dumps({"since": time.time()}).encode(), self.lease)
        revision = await self._read_all()
        if not self.backends and await self._seed():
            revision = await self._read_all()
        self.unsent = set(self.own)            # the new lease needs them again
        self.wake.set()
        self.last_ok = time.monotonic()
        if self.mode != "ok":
            log.info("fleet joined", member=self.name, members=sorted(self.view.members),
                     endpoint=etcd.endpoint)
        self._set_mode("ok")
        self.hooks.view_changed(None)
        self.hooks.backends_changed()
        tasks = [asyncio.ensure_future(job) for job in
                 (self._keep_alive(ttl), self._watch(revision), self._publish())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
        for task in done:
            task.result()

    # -- reading ----------------------------------------------------------------
    async def _read_all(self) -> int:
        revision, kvs = await self.etcd.read_prefix(self.layout.prefix + "/")
        self.view.set_members(())
        self.view.clear_observations()
        self.backends.clear()
        for kv in kvs:
            self._apply(False, kv)
        return revision

    async def _seed(self) -> bool:
        """An empty fleet takes this member's file's backends, once: the first
        transaction claims the seeding, the rest follow in etcd-sized ones."""
        puts = [put_op(self.layout.backend(g, a), json.dumps(f).encode())
                for (g, a), f in self.hooks.seed().items()]
        claim = put_op(self.layout.seeded, json.dumps({"by": self.name}).encode())
        first, rest = puts[:TXN_OPS - 1], puts[TXN_OPS - 1:]
        if not await self.etcd.transaction([unchanged_since(self.layout.seeded, 0)],
                                           [claim, *first]):
            return False
        for at in range(0, len(rest), TXN_OPS):
            await self.etcd.transaction([], rest[at:at + TXN_OPS])
        log.info("fleet backend set seeded from this file", backends=len(puts))
        return True

    async def _watch(self, revision: int) -> None:
        async for events in self.etcd.watch(self.layout.prefix + "/", revision + 1):
            kinds = {self._apply(event.deleted, event.kv) for event in events}
            if "members" in kinds:
                self.hooks.view_changed(None)
            elif observed := {kind[1] for kind in kinds if isinstance(kind, tuple)}:
                self.hooks.view_changed(observed)
            if "backends" in kinds:
                self.backends_seen.set()
                self.backends_seen.clear()
                self.hooks.backends_changed()

    def _apply(self, deleted: bool, kv: KeyValue) -> str | tuple[str, str] | None:
        """Take in one key; what it changed: "members", ("health", BACKEND),
        "backends" (or None)."""
        layout, key = self.layout, kv.key
        try:
            if key.startswith(layout.members):
                name = layout.member_of(key)
                self.view.leave(name) if deleted else self.view.join(name)
                return "members"
            if key.startswith(layout.health):
                backend, member = layout.observation_of(key)
                self.view.observe(backend, member,
                                  None if deleted else Observation(**json.loads(kv.value)))
                return "health", backend
            if key.startswith(layout.backends):
                where = layout.backend_of(key)
                if deleted:
                    self.backends.pop(where, None)
                else:
                    self.backends[where] = (_fields(json.loads(kv.value)), kv.mod_revision)
                return "backends"
        except (ValueError, TypeError) as exc:
            log.warning("fleet: ignored a key with a value it cannot read", key=key,
                        error=str(exc))
        return None

    # -- writing ----------------------------------------------------------------
    async def _keep_alive(self, ttl: int) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            if await self.etcd.keep_alive(self.lease) == 0:
                raise EtcdError("the lease expired")
            self.last_ok = time.monotonic()

    def publish(self, backend: str, observation: Observation | None) -> None:
        """This member's observation of a backend it probes (None: it no longer does)."""
        if observation is None and backend not in self.own:
            return
        self.own[backend] = observation
        self.unsent.add(backend)
        self.wake.set()

    async def _publish(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.unsent:
                backend = self.unsent.pop()
                observation = self.own.get(backend)
                key = self.layout.observation(backend, self.name)
                if observation is None:
                    self.own.pop(backend, None)
                    await self.etcd.delete(key)
                else:
                    await self.etcd.put(key, json.dumps(observation._asdict()).encode(),
                                        self.lease)
                self.writes += 1

    async def change_backend(self, group: str, address: str, fields: dict[str, Any] | None) -> None:
        """Write one backend of the fleet's set (None: remove it) if nobody changed
        it since this member saw it; return once the watch has brought it back."""
        key, where = self.layout.backend(group, address), (group, address)
        seen = self.backends.get(where)
        revision = seen[1] if seen else 0
        operation = delete_op(key) if fields is None else put_op(key, json.dumps(fields).encode())
        if not await self.etcd.transaction([unchanged_since(key, revision)], [operation]):
            raise Conflict(f"{group}/{address} changed in etcd meanwhile; look and try again")
        deadline = time.monotonic() + APPLIED_WAIT

        def applied() -> bool:
            now = self.backends.get(where)
            return now is None if fields is None else now is not None and now[1] != revision
        while not applied():
            left = deadline - time.monotonic()
            if left <= 0:
                raise EtcdError("written, but the change has not come back through the watch")
            try:
                await asyncio.wait_for(self.backends_seen.wait(), left)
            except asyncio.TimeoutError:
                pass


def _fields(raw: dict[str, Any]) -> dict[str, Any]:
    """A backend's fleet-wide fields, checked."""
    weight, state = raw.get("weight", 100), raw.get("state", "ready")
    cc = raw.get("congestion_control", "")
    if not isinstance(weight, int) or not 0 <= weight <= 10000:
        raise ValueError(f"weight {weight!r}")
    if state not in ("ready", "drain", "maint"):
        raise ValueError(f"state {state!r}")
    if not isinstance(cc, str):
        raise ValueError(f"congestion_control {cc!r}")
    return {"weight": weight, "state": state, "congestion_control": cc}
