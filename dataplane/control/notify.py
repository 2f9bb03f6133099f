"""systemd's notify protocol (sd_notify(3)), spoken when ``NOTIFY_SOCKET`` is
set (a ``Type=notify`` unit), without python3-systemd: datagrams of
``KEY=VALUE`` lines on that Unix socket. READY=1 (with STATUS= in the same
datagram) once every worker took the first state; RELOADING=1 then READY=1
around a SIGHUP reload; STOPPING=1; and WATCHDOG=1 every half of
``WATCHDOG_USEC`` when systemd asks for it. A socket that cannot be reached
loses the message, never the balancer."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        path = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if path else None
        watchdog_pid = environ.get("WATCHDOG_PID")
        usec = environ.get("WATCHDOG_USEC", "")
        self.watchdog = int(usec) / 1e6 / 2 if usec.isdigit() and int(usec) > 0 and (
            watchdog_pid in (None, str(os.getpid()))) else None
        self.ready_sent = False

    def send(self, *lines: str) -> None:
        if self.sock is None:
            return
        try:
            self.sock.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            pass

    def ready(self, status: str) -> None:
        self.ready_sent = True
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.watchdog is not None and self.sock is not None:
            self.send("WATCHDOG=1")
            loop.call_later(self.watchdog, self.start_watchdog, loop)
