"""The hand-over on an admin socket (docs/process.md): the taker sends
``{"cmd": "takeover"}``; the giver answers with one byte carrying the
listening sockets as SCM_RIGHTS, then the usual reply line whose result
holds ``carried`` (carried.py). Once the taker's own workers serve, it sends
``{"cmd": "takeover.done"}`` and the giver drains and exits. A taker that
closes the connection without it leaves the giver serving as before."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from .carried import Carried, decode

TAKEOVER = "takeover"
DONE = "takeover.done"
MARK = b"\0"          # the byte the sockets travel with
MAX_SOCKETS = 256     # listeners (one per worker slot) and the metrics listener
WAIT = 10.0           # seconds for the giver to answer
ORPHAN = ".orphan-"   # an orphaned worker listens on ADMIN_SOCKET.orphan-PID
TAKEOVER_FROM = "L7LB_TAKEOVER"   # environment of an upgrade's new process: the old admin socket
REPORT_FD = "L7LB_UPGRADE_FD"     # ...and the pipe it says why it failed on


class TakeoverError(Exception):
    """The giver could not be reached or refused; the message says why."""


def give(peer: socket.socket, fds: list[int]) -> None:
    """The giver's side: the sockets, before the reply line. ``peer`` is the
    admin connection's socket (non-blocking; one byte always fits)."""
    sock = socket.socket(fileno=os.dup(peer.fileno()))
    try:
        socket.send_fds(sock, [MARK], fds)
    finally:
        sock.close()


class Giver:
    """The taker's connection to one giver (blocking, bounded by WAIT)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.buffer = b""
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise TakeoverError(f"cannot reach {path}: {exc.strerror or exc}") from None

    def take(self) -> tuple[list[socket.socket], Carried]:
        """The giver's listening sockets (in its order) and what it carries."""
        self._send(TAKEOVER, {"pid": os.getpid()})
        fds: list[int] = []
        try:
            while b"\n" not in self.buffer:
                try:
                    data, got, _flags, _addr = socket.recv_fds(self.sock, 1 << 16, MAX_SOCKETS)
                except OSError as exc:
                    raise TakeoverError(f"{self.path}: {exc.strerror or exc}") from None
                if not data:
                    raise TakeoverError(f"{self.path} closed the connection")
                fds += got
                self.buffer += data
            result = self._reply()
            carried = decode(result["carried"])
        except Exception:
            for fd in fds:
                os.close(fd)
            raise
        return [socket.socket(fileno=fd) for fd in fds], carried

    def done(self) -> None:
        """Tell the giver that this process serves: it drains and exits."""
        self._send(DONE, {"pid": os.getpid()})
        try:
            while b"\n" not in self.buffer:
                data = self.sock.recv(1 << 16)
                if not data:
                    break          # it went away: nothing left to tell it
                self.buffer += data
            else:
                self._reply()
        except OSError as exc:
            raise TakeoverError(f"{self.path}: {exc.strerror or exc}") from None
        finally:
            self.close()

    def close(self) -> None:
        self.sock.close()

    def _send(self, cmd: str, args: dict[str, Any]) -> None:
        try:
            self.sock.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
        except OSError as exc:
            raise TakeoverError(f"{self.path}: {exc.strerror or exc}") from None

    def _reply(self) -> Any:
        line, _, self.buffer = self.buffer.lstrip(MARK).partition(b"\n")
        try:
            reply = json.loads(line)
        except ValueError:
            raise TakeoverError(f"{self.path} answered {line[:80]!r}") from None
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise TakeoverError(f"{self.path} refused: {error.get('message', reply)}")
        return reply["result"]
