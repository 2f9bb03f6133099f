"""limits.per_client_connections and limits.per_client_rate: one address is
held back (429 in HTTP, a closed connection in TCP) across all workers, the
others are served, and the refusals are counted."""

from __future__ import annotations

import json
import socket
import time

import pytest
from conftest import Client, balancer_config, lbctl
from oracle import read_head
from topology import Topology

LIMITS = "limits: {per_client_connections: 3, per_client_rate: 20}\n"


@pytest.fixture(scope="module")
def site():
    topo = Topology(["client", "other", "lb", "b1"])
    try:
        topo.python_backend("b1", "b1")
        topo.balancer("lb", balancer_config(topo, ["b1"], extra=LIMITS)
                      .replace("workers: 1", "workers: 2"))
        yield topo
    finally:
        topo.close()


def request(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return read_head(sock).split(b"\r\n", 1)[0]


def listener_row(topo: Topology) -> dict:
    result = lbctl(topo, "stats", "--json")
    return next(iter(json.loads(result.stdout)["listeners"].values()))


def test_one_address_holds_at_most_its_connections_across_the_workers(site):
    held = [site.connect("client", "lb", 8080, timeout=5) for _ in range(6)]
    lines = [request(sock, "/c") for sock in held]
    # Two workers take these connections (SO_REUSEPORT); the limit is for both.
    assert sorted(lines) == [b"HTTP/1.1 200 OK"] * 3 + [b"HTTP/1.1 429 Too Many Requests"] * 3
    assert Client(site, host="other").request("GET", "/o")[0].status == 200
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert Client(site).request("GET", "/again")[0].status == 200
    assert listener_row(site)["limited_connections"] >= 3


def test_one_address_over_its_rate_gets_429_the_others_do_not(site):
    client, other = Client(site), Client(site, host="other")
    time.sleep(2.1)                        # the rate window of earlier tests has passed
    statuses = [client.request("GET", f"/r/{i}")[0].status for i in range(40)]
    assert statuses[:20] == [200] * 20
    assert statuses.count(429) >= 15
    assert [other.request("GET", "/o")[0].status for _ in range(5)] == [200] * 5
    response, body = client.request("GET", "/late")
    assert response.status == 429 and response.getheader("Retry-After") == "1"
    assert b"limits.per_client_rate" in body
    time.sleep(2.1)
    assert client.request("GET", "/after")[0].status == 200
    assert listener_row(site)["limited_requests"] >= 15


def test_in_tcp_mode_a_connection_over_the_limit_is_closed(topology):
    topo = topology(["client", "other", "lb", "b1"])
    topo.python_backend("b1", "b1", tcp=True)
    topo.balancer("lb", balancer_config(topo, ["b1"], mode="tcp",
                                        extra="limits: {per_client_connections: 2}\n"))
    held = [topo.connect("client", "lb", 8080, timeout=5) for _ in range(2)]
    extra = topo.connect("client", "lb", 8080, timeout=5)
    extra.sendall(b"hello")
    try:
        assert extra.recv(100) == b""
    except ConnectionResetError:
        pass                                  # closed with the byte unread: a reset
    served = topo.connect("other", "lb", 8080, timeout=5)
    served.sendall(b"hello")
    served.shutdown(socket.SHUT_WR)
    assert served.recv(100).startswith(b"b1 got 5 bytes")
    for sock in (*held, extra, served):
        sock.close()
