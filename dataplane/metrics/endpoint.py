"""The metrics listener: ``GET /metrics`` (Prometheus' text format, made by
prometheus-client), ``/healthz`` (200 while the control process runs),
``/ready`` (200 when workers are up and a backend is healthy, else 503) and
the dashboard's pages. One request per connection, heads up to 8 KiB read
within 5 s; anything else gets 404 or 400. Answers are never cached, and the
browser may run only this listener's own scripts (Content-Security-Policy)."""

from __future__ import annotations

import asyncio
import socket
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST

HEAD_LIMIT = 8192
READ_TIMEOUT = 5.0

Page = Callable[[], tuple[int, str, bytes]]   # status, content type, body
SAFETY = ("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
          "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n")


class MetricsEndpoint:
    def __init__(self, pages: dict[str, Page]) -> None:
        self.pages = pages
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Listen on host:port, or on ``sock`` (a listener handed over by an upgrade)."""
        if sock is not None:
            self.server = await asyncio.start_server(self._serve, sock=sock, limit=HEAD_LIMIT)
        else:
            self.server = await asyncio.start_server(self._serve, host, port, limit=HEAD_LIMIT)

    def listening(self) -> socket.socket | None:
        """The listening socket (to hand over), if listening."""
        if self.server is None or not self.server.sockets:
            return None
        return self.server.sockets[0]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            status, kind, body = self._answer(head)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            writer.close()
            return
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
                     f"Content-Length: {len(body)}\r\n{SAFETY}Connection: close\r\n\r\n"
                     .encode() + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, "text/plain", b"bad request\n"
        if parts[0] not in (b"GET", b"HEAD"):
            return 405, "text/plain", b"GET only\n"
        page = self.pages.get(parts[1].split(b"?", 1)[0].decode("latin-1"))
        if page is None:
            return 404, "text/plain", b"try /, /metrics, /healthz or /ready\n"
        return page()


METRICS_TYPE = CONTENT_TYPE_LATEST
