"""Timeouts and body limits that keep one slow or stuck party from holding
the balancer's resources: each measured from the client, with real backends."""

from __future__ import annotations

import json
import socket
import threading
import time

from conftest import ask_backend, balancer_config, read_until_closed
from load import Load

TIMEOUTS = ("timeouts: {header: 2s, client_body: 1s, backend_idle: 1s, client_write: 1s}\n"
            "limits: {body_bytes: 1000}\n")


def site(topology, extra: str = TIMEOUTS):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"], extra=extra))
    return topo, lb


def upstream_connections(topo) -> int:
    """Established connections from the balancer to the backend."""
    return len(topo.tcp_sockets("lb", "b1", 8000))


def wait_no_upstream(topo, timeout: float) -> float:
    started = time.monotonic()
    while upstream_connections(topo):
        assert time.monotonic() - started < timeout, topo.tcp_sockets("lb", "b1", 8000)
        time.sleep(0.05)
    return time.monotonic() - started


def test_slowloris_gets_408_while_50_others_are_served(topology):
    topo, lb = site(topology)
    sock = topo.connect("client", "lb", 8080, timeout=10)
    head = b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"a" * 20
    answer: list[bytes] = []

    def loris() -> None:
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(1.0)
        except OSError:
            pass
    sender = threading.Thread(target=loris)
    started = time.monotonic()
    sender.start()
    with Load(topo, clients=50, seconds=4) as load:
        answer.append(read_until_closed(sock))
        elapsed = time.monotonic() - started
    sender.join(25)
    sock.close()
    assert answer[0].startswith(b"HTTP/1.1 408"), answer
    assert 1.9 < elapsed < 3.5, elapsed
    assert len(load.statuses) > 50 and set(load.statuses) == {200}, load.failures


def test_a_client_that_stops_sending_its_body_gets_408_and_the_upstream_is_closed(topology):
    topo, lb = site(topology)
    sock = topo.connect("client", "lb", 8080, timeout=10)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n" + b"x" * 100)
    started = time.monotonic()
    data = read_until_closed(sock)
    elapsed = time.monotonic() - started
    sock.close()
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"timeouts.client_body" in data
    assert 0.9 < elapsed < 2.5, elapsed
    wait_no_upstream(topo, 1.0)       # the half-sent request's connection was not kept


def test_a_backend_silent_mid_response_is_cut_after_backend_idle(topology):
    topo, lb = site(topology)
    ask_backend(topo, "b1", "/_fault/stall-5000")
    sock = topo.connect("client", "lb", 8080, timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    started = time.monotonic()
    data = read_until_closed(sock)
    elapsed = time.monotonic() - started
    sock.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"s" * 5000)   # cut short
    assert 0.9 < elapsed < 2.5, elapsed
    wait_no_upstream(topo, 1.0)
    lines = [json.loads(line) for line in open(lb.log_path) if '"event":"request"' in line]
    assert "timeouts.backend_idle" in lines[-1]["error"], lines[-1]


def worker_rss_kib(topo, lb) -> int:
    pid = topo.worker_pids(lb)[0]
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_stops_reading_releases_the_upstream_and_holds_little(topology):
    topo, lb = site(topology)
    for framing in ("length", "chunked"):     # spliced in the kernel / copied in Python
        before = worker_rss_kib(topo, lb)
        sock = topo.connect("client", "lb", 8080, timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /bytes/100000000?framing={framing} HTTP/1.1\r\nHost: t\r\n\r\n"
                     .encode())
        time.sleep(0.5)
        assert upstream_connections(topo) == 1
        grown = worker_rss_kib(topo, lb) - before
        took = wait_no_upstream(topo, 3.0)       # closed within client_write (1 s) and a bit
        sock.close()
        assert grown < 8 * 1024, (framing, grown)   # limits.buffer is 256 KiB
        assert took < 2.5, (framing, took)
        print(f"client that never reads 100 MB ({framing}): worker RSS +{grown} KiB, "
              f"upstream released after {took:.2f} s")
    lines = [json.loads(line) for line in open(lb.log_path) if '"event":"request"' in line]
    assert all("timeouts.client_write" in line["error"] for line in lines[-2:]), lines[-2:]


def test_total_timeout_answers_504_with_retries_included(topology):
    topo, lb = site(topology, "timeouts: {total: 1s}\n")
    ask_backend(topo, "b1", "/_fault/slow-3000")
    sock = topo.connect("client", "lb", 8080, timeout=10)
    started = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = read_until_closed(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 504") and b"timeouts.total" in data, data
    assert 0.9 < time.monotonic() - started < 1.6


def test_bodies_over_limits_body_bytes_get_413(topology):
    # TCP probes: an HTTP probe, sent at a random moment in the first second,
    # would count as a request at the backend (seen once in this session's runs).
    topo, lb = site(topology, TIMEOUTS + "health: {type: tcp}\n")
    sock = topo.connect("client", "lb", 8080, timeout=10)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)
    data = read_until_closed(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 413") and b"limits.body_bytes" in data, data
    assert json.loads(ask_backend(topo, "b1", "/_stats"))["requests"] == 0   # never sent
    sock = topo.connect("client", "lb", 8080, timeout=10)
    chunk = b"%x\r\n%b\r\n" % (600, b"y" * 600)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + chunk * 2 + b"0\r\n\r\n")
    data = read_until_closed(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 413"), data
    ok = topo.connect("client", "lb", 8080, timeout=10)
    ok.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n"
               + b"z" * 1000)
    assert read_until_closed(ok).startswith(b"HTTP/1.1 200")
    ok.close()
