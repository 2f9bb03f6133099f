"""The soak's client load (scripts/soak.py): threads on the client host, each a
kind of traffic, every exchange recorded with when it started and ended and
how it went. Bodies are checked end to end: uploads by the SHA-256 the
backend reports, downloads against the pattern the backend sends, TCP
streams by the backend's digest, WebSocket messages by their echo."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from dataplane.testing.backend import PATTERN, encode_frame
from topology import HTTPConnection, Topology

HTTP_PORT, TCP_PORT = 8080, 9090


@dataclass
class Record:
    kind: str
    started: float
    ended: float
    outcome: str              # "ok", "corrupt: ...", or the failure's cause
    idempotent: bool = True


@dataclass
class Results:
    records: list[Record] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, started: float, outcome: str, idempotent: bool = True) -> None:
        with self.lock:
            self.records.append(Record(kind, started, time.monotonic(), outcome, idempotent))


def expected_download(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


class Traffic:
    """Every kind of client, as threads until ``stop`` is set."""

    def __init__(self, topo: Topology, results: Results, big_every: int = 20) -> None:
        self.topo, self.results, self.big_every = topo, results, big_every
        self.stop = threading.Event()
        self.rng = random.Random(7)
        kinds = [self.get_keep_alive, self.get_keep_alive, self.get_close, self.post_body,
                 self.post_body, self.websocket, self.tcp_stream]
        self.threads = [threading.Thread(target=self._loop, args=(kind,), daemon=True)
                        for kind in kinds]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _loop(self, kind) -> None:
        state: dict = {}
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                outcome, idempotent = kind(state)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                outcome, idempotent = type(exc).__name__, state.get("idempotent", True)
                state.pop("conn", None)
            self.results.add(kind.__name__, started, outcome, idempotent)
            time.sleep(0.002)

    def _connection(self, state: dict) -> http.client.HTTPConnection:
        conn = state.get("conn")
        if conn is None:
            conn = HTTPConnection(self.topo, "client", "lb", HTTP_PORT)
            state["conn"] = conn
        return conn

    # -- the kinds of traffic -------------------------------------------------
    def get_keep_alive(self, state: dict) -> tuple[str, bool]:
        size = self.rng.choice([10, 1000, 100_000, 1_000_000])
        framing = self.rng.choice(["length", "chunked"])
        state["idempotent"] = True
        conn = self._connection(state)
        conn.request("GET", f"/bytes/{size}?framing={framing}")
        response = conn.getresponse()
        if response.status != 200:
            return _status(response), True
        return _download_outcome(response.status, response.read(), size), True

    def get_close(self, state: dict) -> tuple[str, bool]:
        size = self.rng.choice([10, 5000, 300_000])
        with self.topo.connect("client", "lb", HTTP_PORT, timeout=10) as sock:
            sock.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n"
                         .encode())
            data = b""
            while chunk := sock.recv(1 << 16):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head[9:12]) if head[9:12].isdigit() else 0
        return _download_outcome(status, body, size), True

    def post_body(self, state: dict) -> tuple[str, bool]:
        state["count"] = state.get("count", 0) + 1
        size = 10 * 1024 * 1024 if state["count"] % self.big_every == 0 else \
            self.rng.choice([0, 100, 20_000, 600_000])
        body = os.urandom(size)
        chunked = self.rng.random() < 0.3
        state["idempotent"] = False
        conn = self._connection(state)
        if chunked:
            conn.request("POST", "/upload", body=iter([body[:size // 2], body[size // 2:]]),
                         encode_chunked=True)
        else:
            conn.request("POST", "/upload", body=body)
        response = conn.getresponse()
        if response.status != 200:
            return _status(response), False
        answer = response.read()
        report = json.loads(answer)
        if report["body_sha256"] != hashlib.sha256(body).hexdigest():
            framing = "chunked" if chunked else "content-length"
            return (f"corrupt: upload of {size} bytes ({framing}) reached {report['backend']} "
                    f"as {report['body_bytes']} bytes, changed"), False
        return "ok", False

    def websocket(self, state: dict) -> tuple[str, bool]:
        with self.topo.connect("client", "lb", HTTP_PORT, timeout=10) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\n"
                         b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)
                if not chunk:
                    return "closed before the upgrade", False
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                return f"status {head[9:12].decode(errors='replace')}", False
            for _ in range(5):
                message = os.urandom(self.rng.choice([10, 70_000]))
                sock.sendall(encode_frame(2, message, mask=b"\x01\x02\x03\x04"))
                expected = encode_frame(2, message)
                got = _read_exactly(sock, len(expected))
                if len(got) < len(expected):
                    return "closed mid-session", False
                if got != expected:
                    return "corrupt: websocket echo differs", False
        return "ok", False

    def tcp_stream(self, state: dict) -> tuple[str, bool]:
        data = os.urandom(self.rng.choice([100, 100_000, 1_000_000]))
        with self.topo.connect("client", "lb", TCP_PORT, timeout=10) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(1 << 16):
                answer += chunk
        if not answer:
            return "closed without an answer", False
        words = answer.split()
        if words[1:4] != [b"got", str(len(data)).encode(), b"bytes"]:
            return f"answer {answer[:60]!r}", False
        if words[4].decode() != hashlib.sha256(data).hexdigest():
            return "corrupt: tcp stream digest differs", False
        return "ok", False


def _status(response: http.client.HTTPResponse) -> str:
    """The status, who answered, and the start of what it said (read by the caller)."""
    said = response.read()[:60]
    return (f"status {response.status} from {response.getheader('X-Backend') or 'the balancer'}"
            f": {said!r}")


def _download_outcome(status: int, body: bytes, size: int) -> str:
    if status != 200:
        return f"status {status}"
    if len(body) != size:
        return f"truncated: {len(body)} of {size} bytes"
    return "ok" if body == expected_download(size) else f"corrupt: download of {size} bytes"


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data
