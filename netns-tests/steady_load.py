"""Traffic that must not notice an upgrade (test_upgrade.py, scripts/bench-upgrade):
threads in the client namespace sending keep-alive requests, requests on
fresh connections, large downloads checked byte for byte, WebSocket echoes
or raw TCP streams, each outcome counted with its reason. Bounded in time;
``stop`` ends it early."""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
from collections import Counter
from typing import Callable

from topology import HTTPConnection, Topology

PATTERN = bytes(range(256)) * 256      # what the test backend's /bytes/N repeats


def expected_body(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


class SteadyLoad:
    def __init__(self, topo: Topology, seconds: float, port: int = 8080, target: str = "lb",
                 keepalive: int = 3, fresh: int = 2, downloads: int = 1,
                 download_size: int = 4 << 20, websockets: int = 1, streams: int = 0,
                 timeout: float = 10.0, session: float = 3.0) -> None:
        """``session``: seconds each WebSocket session lasts."""
        self.topo, self.port, self.target, self.timeout = topo, port, target, timeout
        self.session = session
        self.deadline = time.monotonic() + seconds
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.failures: Counter[str] = Counter()    # why, for each request that failed
        self.refused = 0                           # connections refused or reset at once
        self.worst = 0.0                           # seconds, the slowest answer
        self.download = expected_body(download_size)
        kinds: list[tuple[int, Callable[[], None]]] = [
            (keepalive, self._keepalive), (fresh, self._fresh), (downloads, self._downloads),
            (websockets, self._websocket), (streams, self._stream)]
        self.threads = [threading.Thread(target=run, daemon=True)
                        for count, run in kinds for _ in range(count)]

    # -- outcomes --------------------------------------------------------------
    def _ok(self, started: float) -> None:
        with self.lock:
            self.requests += 1
            self.worst = max(self.worst, time.monotonic() - started)

    def _failed(self, why: str) -> None:
        with self.lock:
            self.requests += 1
            self.failures[why] += 1

    def _running(self) -> bool:
        return not self.halt.is_set() and time.monotonic() < self.deadline

    def _connect(self) -> socket.socket | None:
        try:
            return self.topo.connect("client", self.target, self.port, timeout=self.timeout)
        except OSError as exc:
            with self.lock:
                self.refused += 1
                self.failures[f"connect: {exc!r}"] += 1
            time.sleep(0.01)
            return None

    # -- kinds of traffic ------------------------------------------------------
    def _keepalive(self) -> None:
        conn = HTTPConnection(self.topo, "client", self.target, self.port, self.timeout)
        sent = 0
        while self._running():
            started = time.monotonic()
            try:
                conn.request("GET", f"/keepalive/{sent}", headers={"Host": "load"})
                response = conn.getresponse()
                body = response.read()
            except ConnectionRefusedError as exc:
                with self.lock:
                    self.refused += 1
                self._failed(f"keep-alive: {exc!r}")
                conn.close()
                time.sleep(0.01)      # as a fresh connection does: no spinning
                continue
            except (OSError, http.client.HTTPException) as exc:
                self._failed(f"keep-alive: {exc!r}")
                conn.close()
                continue
            sent += 1
            if response.status == 200 and body:
                self._ok(started)
            else:
                self._failed(f"keep-alive: status {response.status}")
        conn.close()

    def _fresh(self) -> None:
        self._one_per_connection("/fresh", lambda body: None)

    def _downloads(self) -> None:
        size = len(self.download)

        def judge(body: bytes) -> str | None:
            if body == self.download:
                return None
            whole = "intact" if self.download.startswith(body) else "corrupt"
            return f"download: {len(body)} of {size} bytes, {whole}"
        self._one_per_connection(f"/bytes/{size}", judge)

    def _one_per_connection(self, path: str, judge: Callable[[bytes], str | None]) -> None:
        """GET ``path`` on a fresh connection, over and over; ``judge`` says
        what is wrong with a 200's body, or None."""
        request = f"GET {path} HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n".encode()
        while self._running():
            started = time.monotonic()
            sock = self._connect()
            if sock is None:
                continue
            with sock:
                answer = self._exchange(sock, request)
            _, _, body = answer.partition(b"\r\n\r\n")
            wrong = (judge(body) if answer.startswith(b"HTTP/1.1 200 ")
                     else f"{path}: {answer[:40]!r}")
            if wrong is None:
                self._ok(started)
            else:
                self._failed(wrong)

    def _websocket(self) -> None:
        from dataplane.testing.backend import encode_frame
        while self._running():
            sock = self._connect()
            if sock is None:
                continue
            with sock:
                sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                             b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                head = b""
                try:
                    while b"\r\n\r\n" not in head and (byte := sock.recv(1)):
                        head += byte
                except OSError as exc:
                    self._failed(f"websocket upgrade: {exc!r}")
                    continue
                if not head.startswith(b"HTTP/1.1 101"):
                    self._failed(f"websocket upgrade: {head[:40]!r}")
                    continue
                n, until = 0, time.monotonic() + self.session
                while self._running() and time.monotonic() < until:
                    message = f"message {n}".encode()
                    started = time.monotonic()
                    expected = encode_frame(2, message)
                    got = b""
                    try:
                        sock.sendall(encode_frame(2, message, mask=b"\x01\x02\x03\x04"))
                        while len(got) < len(expected) and (chunk := sock.recv(4096)):
                            got += chunk
                    except OSError as exc:
                        got = repr(exc).encode()
                    if got != expected:
                        self._failed(f"websocket echo: {got[:40]!r}")
                        break
                    self._ok(started)
                    n += 1
                    time.sleep(0.02)

    def _stream(self) -> None:
        """TCP mode: streams of 8 MiB at about 16 MB/s to the --tcp backend,
        each checked by the digest it answers."""
        chunk = bytes(range(256)) * 64
        while self._running():
            started = time.monotonic()
            sock = self._connect()
            if sock is None:
                continue
            digest = hashlib.sha256(b"SINK")
            with sock:
                try:
                    sock.sendall(b"SINK")
                    sent = 4
                    while sent < 8 << 20:
                        sock.sendall(chunk)
                        digest.update(chunk)
                        sent += len(chunk)
                        time.sleep(0.001)
                    sock.shutdown(socket.SHUT_WR)
                    answer = b""
                    while data := sock.recv(4096):
                        answer += data
                except OSError as exc:
                    answer = repr(exc).encode()
            if f"got {sent} bytes {digest.hexdigest()}".encode() in answer:
                self._ok(started)
            else:
                self._failed(f"tcp stream: {answer[:60]!r}")

    def _exchange(self, sock: socket.socket, request: bytes) -> bytes:
        answer = b""
        try:
            sock.sendall(request)
            while chunk := sock.recv(1 << 16):
                answer += chunk
        except OSError as exc:
            return answer or repr(exc).encode()
        return answer

    # -- running ---------------------------------------------------------------
    def __enter__(self) -> "SteadyLoad":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(self.timeout + 10)

    def summary(self) -> dict[str, object]:
        return {"requests": self.requests, "failures": sum(self.failures.values()),
                "refused": self.refused, "worst_ms": round(self.worst * 1000, 1),
                "why": dict(self.failures)}
