"""Fixtures for namespace tests: a topology per test, torn down whatever happens."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from topology import HTTPConnection, Topology, lbctl_path  # noqa: E402


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = "network-namespace tests need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    elif not shutil.which("ip"):
        reason = "network-namespace tests need iproute2's ip"
    if reason:
        here = Path(__file__).parent
        for item in items:
            if here in Path(item.fspath).parents:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def no_bpf_left_behind():
    """Balancers killed by a test leave their BPF registrations: remove them."""
    yield
    from dataplane.kernel.bpf_cc import clear_orphans
    clear_orphans()


@pytest.fixture
def topology():
    """Factory: topology(["client", "lb", "b1"]) builds one; all are removed at the end."""
    made: list[Topology] = []

    def build(hosts: list[str]) -> Topology:
        topo = Topology(hosts)
        made.append(topo)
        return topo

    yield build
    for topo in made:
        topo.close()


class Client:
    """HTTP over sockets made in the client namespace, parsed by http.client."""

    def __init__(self, topo: Topology, host: str = "client", target: str = "lb",
                 port: int = 8080) -> None:
        self.topo, self.host, self.target, self.port = topo, host, target, port

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        conn = HTTPConnection(self.topo, self.host, self.target, self.port, timeout)
        conn.connect()
        return conn

    def request(self, method: str, path: str, body=None, headers=None,
                timeout: float = 10.0) -> tuple[http.client.HTTPResponse, bytes]:
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response, response.read()
        finally:
            conn.close()

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send bytes, read until the balancer closes (or the timeout)."""
        sock = self.topo.connect(self.host, self.target, self.port, timeout=timeout)
        try:
            sock.sendall(data)
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            sock.close()


@contextmanager
def two_backend_site(workers: int = 1):
    """client -> lb -> {b1, b2: Python backends}, for a module's tests to share."""
    topo = Topology(["client", "lb", "b1", "b2"])
    try:
        topo.python_backend("b1", "b1")
        topo.python_backend("b2", "b2")
        topo.balancer("lb", balancer_config(topo, ["b1", "b2"])
                      .replace("workers: 1", f"workers: {workers}"))
        yield topo
    finally:
        topo.close()


def ask_backend(topo, name: str, path: str) -> bytes:
    """GET a test backend's own route (``/_stats``, ``/_fault/MODE``: faults.py),
    from the balancer's host."""
    with topo.connect("lb", name, 8000, timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.partition(b"\r\n\r\n")[2]


def reload_and_wait(topo: Topology, lb: subprocess.Popen, workers: int) -> int:
    """SIGHUP the balancer; wait until every worker has applied the reload's
    state version (health checks publish versions of their own), and return it."""
    sent = topo.log(lb).count('"event":"reload sent"')
    lb.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while topo.log(lb).count('"event":"reload sent"') == sent:
        assert time.monotonic() < deadline, "no reload sent"
        time.sleep(0.02)
    line = [x for x in topo.log(lb).splitlines() if '"event":"reload sent"' in x][-1]
    version = json.loads(line)["version"]
    topo.wait_for_log(lb, f'"version":{version},"workers":{workers}')
    return version


def lbctl(topo: Topology, *args: str, socket: str = "admin.sock") -> subprocess.CompletedProcess:
    """lbctl as a user runs it, against a balancer of the topology."""
    return subprocess.run([lbctl_path(), "--socket", str(topo.tmp / socket), *args],
                          capture_output=True, text=True, timeout=30)


def stats_when(topo: Topology, ready, timeout: float = 3.0) -> dict:
    """`lbctl stats --json` once ``ready(stats)`` holds, or the last one read at
    the timeout: workers report every timer tick (at most 0.25 s), later when
    busy, so a count can trail what the test just did."""
    deadline = time.monotonic() + timeout
    while True:
        stats = json.loads(lbctl(topo, "stats", "--json").stdout)
        if ready(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def balancer_config(topo: Topology, backends: list[str], mode: str = "http",
                    extra: str = "", port: int = 8000) -> str:
    """YAML for a balancer on host "lb" in front of the named hosts."""
    lines = [f"  - {{host: {topo.hosts[b]}, port: {port}}}" for b in backends]
    return (f"balancer: {{port: 8080, bind: {topo.hosts['lb']}, mode: {mode}, workers: 1}}\n"
            "backends:\n" + "\n".join(lines) + "\n"
            f"admin: {{socket: {topo.tmp / 'admin.sock'}}}\n" + extra)


@contextmanager
def streaming_upload(topo: Topology, seconds: float):
    """An upload that keeps sending until the block ends (or ``seconds`` pass)."""
    stop = threading.Event()
    sock = topo.connect("client", "lb", 8080, timeout=5)
    sock.sendall(b"POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n")
    chunk = b"u" * 65536

    def send() -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                sock.sendall(chunk)
            except OSError:
                return

    thread = threading.Thread(target=send)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()            # reset: the balancer drops what it holds of the body
        thread.join(10)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (a reset ends it too)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def websocket_echo(sock: socket.socket) -> None:
    """Upgrade to WebSocket on the test backend's /ws and check that two
    messages (one over 64 KiB) and a close come back as sent."""
    from dataplane.testing.backend import encode_frame
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    for message in (b"hello", b"x" * 70_000):
        sock.sendall(encode_frame(2, message, mask=b"\x01\x02\x03\x04"))
        expected = encode_frame(2, message)
        got = b""
        while len(got) < len(expected):
            got += sock.recv(65536)
        assert got == expected
    sock.sendall(encode_frame(8, b"", mask=b"abcd"))
    assert sock.recv(100) == encode_frame(8, b"")
    sock.close()
