"""Faults a test backend can be switched into at run time, and what it counts.

``/_fault/MODE`` sets the mode for every later request (``/_...`` routes
aside): ``ok``; ``status-NNN`` (an empty answer with that status;
``status-NNN-P``: for P% of the requests, at random);
``reset`` (the connection reset before any answer); ``hang`` (no answer
for 60 s); ``stall-N`` (a head promising 2N bytes, N of them, then
silence for 60 s); ``slow-MS`` (the normal answer, MS ms late). ``/_stats`` answers
JSON with the requests counted (``/_...`` routes are not), how many are
under way and the most there were at once, the requests by client address
and when each client's first came, and the longest gap between two requests; ``/_reset`` starts those counts
again; ``/_health`` always answers 200.
"""

from __future__ import annotations

import io
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from typing import Callable, Protocol


class Answering(Protocol):
    """The backend's request handler, as a fault uses it."""
    connection: socket.socket
    close_connection: bool
    wfile: io.BufferedIOBase

    def answer(self, status: int, body: bytes) -> None: ...


class Faults:
    def __init__(self) -> None:
        self.mode = "ok"
        self.lock = threading.Lock()
        self.requests = self.concurrent = self.max_concurrent = 0
        self.clients: Counter[str] = Counter()
        self.first_seen: dict[str, float] = {}     # client -> wall-clock time of its first
        self.last_at: float | None = None
        self.max_gap = 0.0

    def enter(self, client: str) -> None:
        with self.lock:
            self.requests += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            self.clients[client] += 1
            self.first_seen.setdefault(client, time.time())
            now = time.monotonic()
            if self.last_at is not None:
                self.max_gap = max(self.max_gap, now - self.last_at)
            self.last_at = now

    def reset(self) -> None:
        with self.lock:
            self.requests = self.max_concurrent = 0
            self.clients.clear()
            self.first_seen.clear()
            self.last_at, self.max_gap = time.monotonic(), 0.0    # a silence from now counts

    def leave(self) -> None:
        with self.lock:
            self.concurrent -= 1

    def stats(self) -> bytes:
        with self.lock:
            return json.dumps({"requests": self.requests, "concurrent": self.concurrent,
                               "max_concurrent": self.max_concurrent, "mode": self.mode,
                               "clients": self.clients, "first_seen": self.first_seen,
                               "max_gap_ms": round(self.max_gap * 1000, 1)}).encode()

    def control(self, path: str, answer: Callable[[int, bytes], None]) -> None:
        """A ``/_`` route."""
        if path.startswith("/_fault/"):
            self.mode = path.removeprefix("/_fault/")
            answer(200, self.mode.encode())
        elif path == "/_stats":
            answer(200, self.stats())
        elif path == "/_reset":
            self.reset()
            answer(200, b"reset")
        else:
            answer(200, b"ok")

    def inject(self, handler: Answering) -> bool:
        """Apply the mode to a request (``handler``: the backend's request
        handler); True if it was answered (or refused) here."""
        mode = self.mode
        if mode.startswith("status-"):
            status, _, percent = mode.removeprefix("status-").partition("-")
            if random.uniform(0, 100) >= float(percent or 100):
                return False
            handler.answer(int(status), b"")
            return True
        if mode == "reset":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                          struct.pack("ii", 1, 0))
            handler.close_connection = True
            return True
        if mode == "hang":
            time.sleep(60)
            return True
        if mode.startswith("stall-"):
            size = int(mode.removeprefix("stall-"))
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b"
                                % (2 * size, b"s" * size))
            handler.wfile.flush()
            time.sleep(60)
            handler.close_connection = True
            return True
        if mode.startswith("slow-"):
            time.sleep(int(mode.removeprefix("slow-")) / 1000)
        return False
