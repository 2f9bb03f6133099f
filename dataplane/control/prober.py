"""Active health probes, run by the control process: one task per backend,
at most one probe in flight each, every ``interval`` (jittered by +-10%), or
every ``fast_interval`` while the last probe failed.

``http``: GET ``path`` with ``Host: host`` over a new connection, answer read
up to the status line; a status in ``expect`` passes, any other fails.
``tcp``: the connect itself. Where the group speaks HTTP/2 (h2, h2c), the
probe does too: ``h2`` (the handshake), ``http`` and ``grpc`` (h2_probe.py). A probe that has not answered within
``timeout`` is reported as timed out, and then still waited for up to
``LATE_CAP`` seconds: an answer that comes late is a heartbeat all the same.
Probe sockets get the backend's congestion control, as every upstream
connection does. Backends in ``maint`` are not probed.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from typing import Callable, NamedTuple

from ..kernel.tcp_info import set_algorithm
from ..proxyproto.header import encode
from ..upstream.pool import Tls
from . import h2_probe

LATE_CAP = 30.0          # seconds a timed-out probe is still waited for
JITTER = 0.1
READ_LIMIT = 8192        # bytes read looking for the status line


class ProbeSpec(NamedTuple):
    kind: str                     # "http" | "tcp" | "h2" | "grpc"
    path: str
    host_header: str | None       # None: the backend's own host:port
    expect: tuple[tuple[int, int], ...]
    timeout: float
    interval: float
    fast_interval: float
    send_proxy: str | None = None   # "v1" | "v2": probes begin with a PROXY header too
    tls: Tls | None = None          # probes over TLS, as the group's connections
    http2: bool = False             # the group speaks HTTP/2 (h2 or h2c)
    grpc_service: str = ""


class Target:
    """One backend to probe."""
    __slots__ = ("name", "host", "port", "cc", "maint", "task")

    def __init__(self, name: str, host: str, port: int, cc: str, maint: bool) -> None:
        self.name, self.host, self.port, self.cc, self.maint = name, host, port, cc, maint
        self.task: asyncio.Task[None] | None = None


# report(name, outcome, ms, detail): outcome "pass", "fail", "timeout" or "late"
Report = Callable[[str, str, float | None, str], None]


class Prober:
    def __init__(self, loop: asyncio.AbstractEventLoop, spec: ProbeSpec, report: Report) -> None:
        self.loop = loop
        self.spec = spec
        self.report = report
        self.targets: dict[str, Target] = {}

    def watch(self, target: Target) -> None:
        """Probe ``target`` from now on (or update what is known of it)."""
        known = self.targets.get(target.name)
        if known is not None:
            known.cc, known.maint = target.cc, target.maint
            return
        self.targets[target.name] = target
        target.task = self.loop.create_task(self._run(target))

    def forget(self, name: str) -> None:
        target = self.targets.pop(name, None)
        if target is not None and target.task is not None:
            target.task.cancel()

    def stop(self) -> None:
        for name in list(self.targets):
            self.forget(name)

    async def _run(self, target: Target) -> None:
        spec = self.spec
        await asyncio.sleep(random.uniform(0, min(spec.interval, 1.0)))   # spread the first
        while True:
            failed = False
            if not target.maint:
                failed = await self._probe(target)
            base = spec.fast_interval if failed else spec.interval
            await asyncio.sleep(base * random.uniform(1 - JITTER, 1 + JITTER))

    async def _probe(self, target: Target) -> bool:
        """One probe; True when it did not pass in time."""
        started = time.monotonic()
        attempt = self.loop.create_task(self._attempt(target))
        done, _ = await asyncio.wait({attempt}, timeout=self.spec.timeout)
        if not done:
            self.report(target.name, "timeout", None, "timeout")
            try:
                ok, detail = await asyncio.wait_for(attempt, LATE_CAP)
            except (asyncio.TimeoutError, OSError):
                return True
            if ok:
                self.report(target.name, "late", _ms(started), detail)
            return True
        ok, detail = attempt.result()
        self.report(target.name, "pass" if ok else "fail", _ms(started), detail)
        return not ok

    async def _attempt(self, target: Target) -> tuple[bool, str]:
        try:
            return await self._exchange(target)
        except ConnectionRefusedError:
            return False, "refused"
        except ConnectionResetError:
            return False, "reset"
        except OSError as exc:
            return False, exc.strerror or type(exc).__name__

    async def _exchange(self, target: Target) -> tuple[bool, str]:
        infos = await self.loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        family, address = infos[0][0], infos[0][4]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            if target.cc and target.cc != "pacer":
                try:
                    set_algorithm(sock, target.cc)
                except OSError:
                    pass          # the workers log an unavailable algorithm once
            await self.loop.sock_connect(sock, address)
            if self.spec.send_proxy:           # the balancer's own connection: no client
                await self.loop.sock_sendall(sock, encode(self.spec.send_proxy, None))
            if self.spec.tls is not None:
                return await self._over_tls(sock.detach(), target)
            if self.spec.kind == "tcp":
                return True, "connected"
            if self.spec.http2:
                reader, writer = await asyncio.open_connection(sock=socket.socket(
                    fileno=sock.detach()))
                return await self._h2(reader, writer, target, b"http")
            await self.loop.sock_sendall(sock, self._request(target))
            data = b""
            while b"\r\n" not in data and len(data) < READ_LIMIT:
                chunk = await self.loop.sock_recv(sock, READ_LIMIT)
                if not chunk:
                    break
                data += chunk
            return self._judge(data)

    async def _over_tls(self, fd: int, target: Target) -> tuple[bool, str]:
        """The handshake (verified as the group's connections are), then as above."""
        assert self.spec.tls is not None       # the caller checked
        context, name = self.spec.tls
        reader, writer = await asyncio.open_connection(
            sock=socket.socket(fileno=fd), ssl=context, server_hostname=name or target.host)
        try:
            if self.spec.kind == "tcp":
                return True, "handshake"
            if self.spec.http2:
                return await self._h2(reader, writer, target, b"https")
            writer.write(self._request(target))
            data = b""
            while b"\r\n" not in data and len(data) < READ_LIMIT:
                chunk = await reader.read(READ_LIMIT)
                if not chunk:
                    break
                data += chunk
            return self._judge(data)
        finally:
            writer.close()

    async def _h2(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  target: Target, scheme: bytes) -> tuple[bool, str]:
        spec = self.spec
        try:
            return await h2_probe.probe(reader, writer, spec.kind, scheme, spec.path,
                                        spec.host_header or f"{target.host}:{target.port}",
                                        spec.grpc_service, spec.expect)
        finally:
            writer.close()

    def _request(self, target: Target) -> bytes:
        spec = self.spec
        host = spec.host_header or f"{target.host}:{target.port}"
        return (f"GET {spec.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                f"User-Agent: l7lb-health\r\n\r\n").encode("latin-1")

    def _judge(self, data: bytes) -> tuple[bool, str]:
        spec = self.spec
        status = _status(data)
        if status is None:
            return False, "bad response" if data else "closed before answering"
        return any(low <= status <= high for low, high in spec.expect), str(status)


def _status(data: bytes) -> int | None:
    line = data.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0].startswith(b"HTTP/1.") and line[1].isdigit():
        return int(line[1])
    return None


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)
