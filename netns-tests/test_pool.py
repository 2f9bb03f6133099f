"""The upstream connection pool with real backends: reuse, backends that
close idle connections, max_active with a FIFO queue, idle_timeout, and
resets on reused connections."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

from conftest import Client, balancer_config


def peer(body: bytes) -> str:
    return json.loads(body)["peer"]


def established(topo, backend: str) -> int:
    return len(topo.tcp_sockets("lb", backend, 8000))


def test_sequential_requests_reuse_at_most_max_idle_connections(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(topo, ["b1"], extra="pool: {max_idle: 2}\n"))
    client = Client(topo)
    conn = client.connection()
    peers = set()
    for i in range(1000):
        conn.request("GET", f"/seq/{i}")
        peers.add(peer(conn.getresponse().read()))
    conn.close()
    for i in range(20):                        # new client connections, same pool
        peers.add(peer(client.request("GET", f"/new/{i}")[1]))
    assert len(peers) <= 2, peers


def test_backend_closing_idle_connections_costs_no_request(topology):
    topo = topology(["client", "lb", "n1"])
    topo.nginx_backend("n1", "n1", keepalive="1s")
    topo.balancer("lb", balancer_config(topo, ["n1"]))
    client = Client(topo)
    conn = client.connection()
    for gap in (0.5, 0.9, 1.0, 1.1, 1.5, 3.0):
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"nginx n1\n"), gap
        time.sleep(gap)
    conn.close()


def run_clients(topo, count: int, path: str,
                spacing: float = 0.03) -> list[tuple[int, float, int, str]]:
    """Start ``count`` clients ``spacing`` apart; (index, finished at, status, body)."""
    results = []
    lock = threading.Lock()

    def one(index: int) -> None:
        response, body = Client(topo).request("GET", path, timeout=20)
        with lock:
            results.append((index, time.monotonic(), response.status,
                            response.getheader("Retry-After"), body))

    threads = []
    for index in range(count):
        thread = threading.Thread(target=one, args=(index,))
        thread.start()
        threads.append(thread)
        time.sleep(spacing)
    for thread in threads:
        thread.join(30)
    return sorted(results, key=lambda r: r[1])


def test_max_active_queues_in_order(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(topo, ["b1"], extra="pool: {max_active: 2}\n"))
    # 100 ms apart: arrival order survives a client thread that starts late.
    results = run_clients(topo, 10, "/slow/400", spacing=0.1)
    assert [status for _, _, status, _, _ in results] == [200] * 10
    order = [index for index, *_ in results]
    assert order == sorted(order), order        # served first come, first served
    assert len({peer(body) for *_, body in results}) <= 2


def test_full_queue_answers_503_with_retry_after(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(topo, ["b1"],
                                        extra="pool: {max_active: 2, max_queue: 3}\n"))
    results = run_clients(topo, 10, "/slow/600")
    served = sorted(index for index, _, status, _, _ in results if status == 200)
    refused = [(status, retry) for _, _, status, retry, _ in results if status != 200]
    assert served == [0, 1, 2, 3, 4]
    assert refused == [(503, "1")] * 5


def test_queue_timeout(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(
        topo, ["b1"], extra="pool: {max_active: 1, queue_timeout: 300ms}\n"))
    results = run_clients(topo, 2, "/slow/1500")
    assert [status for _, _, status, _, _ in results] == [503, 200]
    assert b"queue_timeout" in results[0][4]


def test_idle_timeout_closes_idle_connections_on_time(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(topo, ["b1"], extra="pool: {idle_timeout: 1s}\n"))
    Client(topo).request("GET", "/once")
    time.sleep(0.3)
    assert established(topo, "b1") == 1
    time.sleep(1.7)                              # idle_timeout plus one second at most
    assert established(topo, "b1") == 0


def one_backend(topology):
    """A balancer before one Python backend, and a client connection to it."""
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(topo, ["b1"]))
    return Client(topo).connection()


def test_backend_resetting_an_idle_connection_is_seen_before_reuse(topology):
    """A peer's RST on an idle pooled connection (EPOLLERR, which uvloop's
    poll handles would lose) reaches the pool through the transport: a POST,
    which is never retried, then goes on a new connection and succeeds."""
    conn = one_backend(topology)
    conn.request("GET", "/reset-after")
    first = peer(conn.getresponse().read())
    time.sleep(0.3)                               # the RST arrives while idle
    conn.request("POST", "/upload", body=b"x" * 1000)
    response = conn.getresponse()
    assert response.status == 200 and peer(response.read()) != first
    conn.close()


def test_reset_reused_connection_retries_safe_requests_only(topology):
    conn = one_backend(topology)
    conn.request("GET", "/arm-reset")
    first = peer(conn.getresponse().read())
    conn.request("GET", "/after")                 # lands on the armed connection
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200 and peer(body) != first
    conn.request("GET", "/arm-reset")
    conn.getresponse().read()
    conn.request("POST", "/upload", body=b"x" * 1000)
    response = conn.getresponse()
    assert response.status == 502
    conn.close()


def test_large_body_on_a_reused_connection_arrives_whole_behind_a_bottleneck(topology):
    # Reuse attaches the request to its backend while its head is being parsed;
    # body bytes read with the head must go first, the kernel splice after them.
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(topo, ["b1"]))
    topo.shape("b1", "50mbit")
    client = Client(topo)
    for _ in range(3):
        first = peer(client.request("GET", "/warm")[1])
        body = os.urandom(1_500_000)
        response, data = client.request("POST", "/upload", body=body, timeout=20)
        report = json.loads(data)
        assert response.status == 200 and report["peer"] == first      # reused
        assert report["body_sha256"] == hashlib.sha256(body).hexdigest()
