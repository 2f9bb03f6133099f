"""The admin socket, served by the control process: newline-delimited JSON.

In: ``{"cmd": "...", "args": {...}}``. Out: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code": "...", "message": "..."}}``. Many clients
at once; a bad line gets an error object and the connection stays usable.
The protocol is written up in docs/admin-protocol.md.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import json
import os
import socket
import struct
from typing import Any, Callable, cast

import structlog

log = structlog.get_logger("l7lb.admin")

MAX_LINE = 64 * 1024
BACKLOG = 64        # unanswered lines per client before its input is paused
_CRED = struct.Struct("3i")       # struct ucred: pid, uid, gid


class AdminError(Exception):
    """A request the balancer refuses: ``code`` is stable, ``message`` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


Handler = Callable[[dict[str, Any]], Any]


def peer_ids(sock: socket.socket) -> tuple[int, int]:
    _pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _CRED.size))
    return uid, gid


class _Session(asyncio.Protocol):
    """One client: its lines are answered in order, one at a time (a command
    may wait, e.g. a backend draining before removal)."""

    def __init__(self, server: "AdminServer") -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.discarding = False     # inside an over-long line, until its newline
        self.lines: asyncio.Queue[bytes | dict[str, Any]] = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._answer())

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, base)   # a stream's transport
        uid, gid = peer_ids(transport.get_extra_info("socket"))
        if uid not in self.server.allowed_uids and gid not in self.server.allowed_gids:
            log.warning("admin client refused", uid=uid)
            transport.write(json.dumps({"ok": False, "error": {
                "code": "forbidden", "message": f"uid {uid} may not use this socket"}}).encode()
                + b"\n")
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.cancel()

    async def _answer(self) -> None:
        while True:
            item = await self.lines.get()
            if self.lines.qsize() < BACKLOG // 4 and self.transport is not None:
                self.transport.resume_reading()
            reply = item if isinstance(item, dict) else await self.server.handle_line(item)
            self._send(reply)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            line, newline, rest = self.buffer.partition(b"\n")
            if not newline:
                if len(self.buffer) > MAX_LINE:
                    self.buffer = b""
                    if not self.discarding:
                        self.discarding = True
                        self._error("too_long", f"request line over {MAX_LINE} bytes")
                return
            self.buffer = rest
            if self.discarding:
                self.discarding = False
                continue
            if len(line) > MAX_LINE:
                self._error("too_long", f"request line over {MAX_LINE} bytes")
                continue
            if line.strip():
                self.lines.put_nowait(line)
                if self.lines.qsize() > BACKLOG and self.transport is not None:
                    self.transport.pause_reading()    # a client that writes, never reads

    def _error(self, code: str, message: str) -> None:
        self.lines.put_nowait({"ok": False, "error": {"code": code, "message": message}})

    def _send(self, reply: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(json.dumps(reply).encode() + b"\n")


class AdminServer:
    def __init__(self, path: str, mode: str, commands: dict[str, Handler],
                 group: str | None = None) -> None:
        self.path = path
        self.mode = int(mode, 8)
        self.commands = commands
        self.allowed_uids = {0, os.getuid()}
        self.group = grp.getgrnam(group).gr_gid if group else None   # KeyError: no such group
        self.allowed_gids = {self.group} if self.group is not None else set()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._clear_stale()
        loop = asyncio.get_running_loop()
        self.server = await loop.create_unix_server(lambda: _Session(self), self.path)
        if self.group is not None:
            os.chown(self.path, -1, self.group)
        os.chmod(self.path, self.mode)
        log.info("admin socket", path=self.path, mode=oct(self.mode))

    def _clear_stale(self) -> None:
        """A socket file left by a crashed run is replaced; a live one is not."""
        if not os.path.exists(self.path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                os.unlink(self.path)
                return
            raise
        finally:
            probe.close()
        raise AdminError("already_running", f"{self.path} is held by a running balancer")

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    async def handle_line(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": {"code": "bad_json", "message": str(exc)}}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": {"code": "bad_request",
                                           "message": 'expected {"cmd": "...", "args": {...}}'}}
        args = request.get("args", {})
        args = {} if args is None else args
        handler = self.commands.get(request["cmd"])
        if handler is None:
            return {"ok": False, "error": {
                "code": "unknown_command",
                "message": f"unknown command {request['cmd']!r}; "
                           f"known: {', '.join(sorted(self.commands))}"}}
        if not isinstance(args, dict):
            return {"ok": False, "error": {"code": "bad_args", "message": "args must be an object"}}
        try:
            result = handler(args)
            if asyncio.iscoroutine(result):
                result = await result
            return {"ok": True, "result": result}
        except AdminError as exc:
            return {"ok": False, "error": {"code": exc.code, "message": exc.message}}
        except Exception as exc:  # noqa: BLE001 - one bad command must not stop the server
            log.error("admin command failed", cmd=request["cmd"], exc_info=exc)
            return {"ok": False, "error": {"code": "internal", "message": repr(exc)}}

