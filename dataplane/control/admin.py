"""The admin socket, served by the control process: newline-delimited JSON.

In: ``{"cmd": "...", "args": {...}}``. Out: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code": "...", "message": "..."}}``. Many clients
at once; a bad line gets an error object and the connection stays usable.
The protocol is written up in docs/admin-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextvars
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
_PEER: contextvars.ContextVar[socket.socket] = contextvars.ContextVar("admin_peer")


def peer_socket() -> socket.socket:
    """In a command handler: the connection of the client it answers (the
    hand-over sends sockets on it)."""
    return _PEER.get()


def peer_pid() -> int:
    """In a command handler: the client's process id (SO_PEERCRED)."""
    pid, _uid, _gid = _CRED.unpack(peer_socket().getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return int(pid)


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
            if self.transport is not None:
                _PEER.set(self.transport.get_extra_info("socket"))
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
        self.inode = 0
        self.beside: str | None = None

    async def start(self, beside: bool = False) -> None:
        """Listen on the path; ``beside`` (an upgrade, the path still held by
        the process taken over): on PATH.new until ``settle`` moves it."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        path = self.path + ".new" if beside else self.path
        if beside and os.path.exists(path):
            os.unlink(path)          # left by an upgrade that failed
        elif not beside:
            self._clear_stale()
        loop = asyncio.get_running_loop()
        self.server = await loop.create_unix_server(lambda: _Session(self), path)
        if self.group is not None:
            os.chown(path, -1, self.group)
        os.chmod(path, self.mode)
        self.inode = os.stat(path).st_ino
        self.beside = path if beside else None
        log.info("admin socket", path=path, mode=oct(self.mode))

    def settle(self) -> None:
        """Take the path over from the previous process (one atomic rename:
        a client finds one of the two at any moment)."""
        if self.beside is not None:
            os.rename(self.beside, self.path)
            self.beside = None

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
        """Stop listening; the file goes too, unless a newer process owns it."""
        if self.server is None:
            return
        self.server.close()
        path = self.beside or self.path
        try:
            if os.stat(path).st_ino == self.inode:
                os.unlink(path)
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

