"""Hostile or broken clients get bounded treatment; everyone else keeps being served."""

from __future__ import annotations

import socket
import time

import pytest
from conftest import Client, balancer_config
from topology import Topology

STRICT = """timeouts: {header: 1s, idle: 2s}
limits: {connections: 6, header_bytes: 4096, headers: 20}
"""


@pytest.fixture(scope="module")
def strict():
    topo = Topology(["client", "lb", "b1"])
    try:
        topo.python_backend("b1", "b1")
        topo.balancer("lb", balancer_config(topo, ["b1"], extra=STRICT))
        yield topo
    finally:
        topo.close()


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_slow_head_gets_408_after_header_timeout(strict):
    sock = strict.connect("client", "lb", 8080, timeout=5)
    started = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")      # never finishes the head
    assert Client(strict).request("GET", "/meanwhile")[0].status == 200
    data = read_until_closed(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 408")
    assert 0.9 < time.monotonic() - started < 3


def test_silent_connection_closed_without_response(strict):
    sock = strict.connect("client", "lb", 8080, timeout=5)
    started = time.monotonic()
    assert read_until_closed(sock) == b""
    assert time.monotonic() - started < 3
    sock.close()


def test_idle_keep_alive_connection_is_closed(strict):
    conn = Client(strict).connection()
    conn.request("GET", "/once")
    assert conn.getresponse().read()
    started = time.monotonic()
    assert conn.sock.recv(10) == b""
    assert 1.5 < time.monotonic() - started < 4
    conn.close()


def test_too_many_headers_and_too_large_head(strict):
    many = b"".join(b"X-%d: v\r\n" % i for i in range(30))
    assert Client(strict).raw(b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(
        b"HTTP/1.1 431")
    big = b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert Client(strict).raw(big).startswith(b"HTTP/1.1 414")


def test_connection_limit_refuses_extra_but_serves_the_rest(topology):
    strict = topology(["client", "lb", "b1"])
    strict.python_backend("b1", "b1")
    strict.balancer("lb", balancer_config(strict, ["b1"], extra=STRICT))
    time.sleep(0.3)       # the start-up probe's connection is gone
    held = [strict.connect("client", "lb", 8080, timeout=5) for _ in range(6)]
    try:
        time.sleep(0.2)
        extra = strict.connect("client", "lb", 8080, timeout=5)
        assert extra.recv(10) == b""          # accepted and closed at once
        extra.close()
        held[0].sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held[0].recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()


def test_client_vanishing_mid_upload_does_not_disturb_others(strict):
    sock = strict.connect("client", "lb", 8080, timeout=5)
    sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
    sock.sendall(b"y" * 1_000_000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()                              # reset mid-body
    for i in range(5):
        assert Client(strict).request("GET", f"/after/{i}")[0].status == 200


def test_garbage_flood_gets_400_and_balancer_stays_up(strict):
    for payload in (b"\x00" * 1000, b"GET / HTTP/9.9\r\n\r\n", b"GET\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"):
        assert Client(strict).raw(payload).startswith(b"HTTP/1.1 400"), payload
    assert Client(strict).request("GET", "/alive")[0].status == 200
