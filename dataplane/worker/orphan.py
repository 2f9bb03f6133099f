"""A worker whose control process died (PR_SET_PDEATHSIG sends SIGUSR2):
it serves on with its last state for ``timeouts.orphan``, and offers itself
for a takeover on ADMIN_SOCKET.orphan-PID. A new control process (``lbctl
run``, e.g. systemd's Restart=always) takes its listeners and its last state
there, starts its own workers on the same sockets, and then tells this one to
drain (handover/wire.py). Nobody coming within ``timeouts.orphan``: it drains
and exits as on SIGTERM. See docs/process.md."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any, Callable, Protocol

import structlog

from .. import __version__
from ..channel.messages import Snapshot
from ..config import Config, backend_key
from ..handover import wire
from ..handover.carried import Carried, HostCarry, encode
from ..tls.tickets import split_keys

log = structlog.get_logger("l7lb.worker")


class Orphaned(Protocol):
    """What the orphan needs of its worker."""
    config: Config
    listeners: list[socket.socket]
    snapshot: Snapshot | None
    stopping: bool

    @property
    def slot(self) -> int: ...


class Orphan:
    def __init__(self, worker: Orphaned, stop: Callable[[], None]) -> None:
        self.worker, self.stop = worker, stop
        self.path: str | None = None
        self.server: asyncio.AbstractServer | None = None

    def begin(self) -> None:
        if self.path is not None or self.worker.stopping:
            return
        config = self.worker.config
        self.path = f"{config.admin.socket}{wire.ORPHAN}{os.getpid()}"
        wait = config.timeouts.orphan
        log.warning("the control process is gone: serving on with the last state, "
                    "open to a takeover", slot=self.worker.slot, path=self.path, for_s=wait)
        loop = asyncio.get_running_loop()
        loop.create_task(self._listen(config.admin.mode))
        loop.call_later(wait, self._expire)

    async def _listen(self, mode: str) -> None:
        assert self.path is not None
        try:
            self.server = await asyncio.start_unix_server(self._session, self.path)
            os.chmod(self.path, int(mode, 8))
        except OSError as exc:
            log.error("cannot offer this worker for a takeover", error=str(exc))

    def _expire(self) -> None:
        if not self.worker.stopping:
            log.warning("nobody took this orphaned worker over: draining",
                        waited_s=self.worker.config.timeouts.orphan)
            self.stop()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = self._answer(line, writer.get_extra_info("socket"))
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def _answer(self, line: bytes, peer: socket.socket) -> dict[str, Any]:
        cmd = json.loads(line).get("cmd")
        if self.worker.stopping:
            return {"ok": False, "error": {"code": "stopping", "message": "draining already"}}
        if cmd == wire.TAKEOVER:
            wire.give(peer, [s.fileno() for s in self.worker.listeners])
            return {"ok": True, "result": {"carried": encode(self.carried())}}
        if cmd == wire.DONE:
            log.info("taken over by a new control process: draining")
            asyncio.get_running_loop().call_soon(self.stop)
            return {"ok": True, "result": {"draining": os.getpid()}}
        return {"ok": False, "error": {"code": "unknown_command",
                                       "message": f"an orphaned worker knows only "
                                                  f"{wire.TAKEOVER} and {wire.DONE}"}}

    def carried(self) -> Carried:
        """This worker's listeners and its last state: the backend set, its
        health as last published, the ticket keys."""
        worker, snapshot = self.worker, self.worker.snapshot
        settings = worker.config.balancer
        backends = snapshot.backends if snapshot is not None else []
        tickets = snapshot.tickets if snapshot is not None else b""
        now = time.monotonic()
        return Carried(
            __version__, os.getpid(), f"{settings.bind}:{settings.port}",
            [worker.slot] * len(worker.listeners), backends=backends,
            health={backend_key(b.cluster, f"{b.host}:{b.port}"): HostCarry(b.health, now)
                    for b in backends},
            tickets=split_keys(tickets))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
