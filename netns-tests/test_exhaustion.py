"""Resource exhaustion: descriptors, silent connections, 10,000 idle keep-alive
clients, a backend that never reads, a flood on the admin socket. Each time
the balancer refuses or times out what it cannot take, keeps serving the
rest, recovers, and holds memory within its documented buffers (the
figures are in docs/reliability.md)."""

from __future__ import annotations

import os
import resource
import socket
import threading
import time

import pytest
from conftest import Client, balancer_config, lbctl, stats_when
from topology import Topology, lbctl_path


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kernel_max(name: str) -> int:
    return int(open(f"/proc/sys/net/ipv4/{name}").read().split()[2])


def open_connections(topo: Topology, at_least: int = 0) -> int:
    """Client connections the balancer holds, once its report shows ``at_least``."""
    def held(stats: dict) -> int:
        return sum(row["sessions_current"] for row in stats["listeners"].values())
    return held(stats_when(topo, lambda stats: held(stats) >= at_least))


def test_out_of_descriptors_the_excess_is_dropped_and_the_balancer_recovers(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    path = topo.tmp / "balancer.yaml"
    path.write_text(balancer_config(topo, ["b1"]))
    lb = topo.spawn("lb", ["prlimit", "--nofile=200:200", lbctl_path(), "run", "-c", str(path)],
                    log_name="balancer.log")
    topo.wait_port("lb", 8080, from_host="client", proc=lb)
    worker = topo.worker_pids(lb)[0]
    held = [topo.connect("client", "lb", 8080, timeout=5) for _ in range(400)]
    time.sleep(0.5)
    spent = cpu_seconds(worker)
    time.sleep(1.0)
    spent = cpu_seconds(worker) - spent
    assert spent < 0.5, spent                       # no busy loop on EMFILE
    for sock in held:
        sock.close()
    time.sleep(0.5)
    statuses = [Client(topo).request("GET", f"/after/{i}")[0].status for i in range(20)]
    assert statuses == [200] * 20
    assert lb.poll() is None
    print(f"400 connections at 200 descriptors: worker CPU {spent:.2f} s in 1 s, then served")


def test_a_flood_of_silent_connections_is_timed_out_while_others_are_served(topology):
    topo = topology(["client", "other", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(topo, ["b1"], extra="timeouts: {header: 1s}\n"))
    silent = [topo.connect("client", "lb", 8080, timeout=5) for _ in range(3000)]
    started = time.monotonic()
    other = Client(topo, host="other")
    assert [other.request("GET", f"/o/{i}")[0].status for i in range(20)] == [200] * 20
    served_in = time.monotonic() - started
    deadline = time.monotonic() + 10
    while open_connections(topo) > 0:
        assert time.monotonic() < deadline, open_connections(topo)
        time.sleep(0.2)
    cleared_in = time.monotonic() - started
    for sock in silent:
        sock.close()
    assert served_in < 2.0, served_in
    print(f"3,000 silent connections: 20 requests beside them in {served_in:.2f} s, "
          f"all closed after {cleared_in:.1f} s")


def test_ten_thousand_idle_keep_alive_clients_are_held_in_little_memory(topology):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 10_500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard}: 10,000 client sockets do not fit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))      # for us and the balancer
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    # The burst of 10,000 requests is forwarded as fast as it comes; the pool
    # holds it to what the test backend (a thread per connection, a backlog of
    # 128) takes without dropping SYNs: the rest wait their turn in its queue.
    lb = topo.balancer("lb", balancer_config(topo, ["b1"], extra=(
        "limits: {connections: 20000}\n"
        "pool: {max_active: 64, max_queue: 10000, queue_timeout: 30s}\n")))
    worker = topo.worker_pids(lb)[0]
    Client(topo).request("GET", "/warm")
    before = rss_kib(worker)
    clients = []
    for i in range(10_000):
        sock = topo.connect("client", "lb", 8080, timeout=10)
        sock.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        clients.append(sock)
    for sock in clients:
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    per_connection = (rss_kib(worker) - before) / 10_000
    started = time.monotonic()
    assert Client(topo).request("GET", "/new")[0].status == 200
    latency = time.monotonic() - started
    assert open_connections(topo, at_least=10_000) >= 10_000
    for sock in clients:
        sock.close()
    assert per_connection < 16, per_connection       # KiB (docs/reliability.md)
    assert latency < 0.5, latency
    print(f"10,000 idle clients: {per_connection:.2f} KiB each, a new request {latency:.3f} s")


def test_a_backend_that_never_reads_an_upload_holds_bounded_memory(topology):
    topo = topology(["client", "lb", "b1"])
    listener = topo.socket("b1")
    listener.bind((topo.hosts["b1"], 8000))
    listener.listen(16)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    lb = topo.balancer("lb", balancer_config(topo, ["b1"], extra=(
        "health: {type: tcp}\ntimeouts: {request: 2s, backend_idle: 2s, idle: 3s}\n")))
    worker = topo.worker_pids(lb)[0]
    before = rss_kib(worker)
    sock = topo.connect("client", "lb", 8080, timeout=10)
    sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n")
    sock.setblocking(False)
    sent, chunk, started = 0, b"x" * 65536, time.monotonic()
    while time.monotonic() - started < 1.5:      # push until the balancer stops taking it
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
    grown = rss_kib(worker) - before
    sock.setblocking(True)
    sock.settimeout(10)
    try:
        answer = sock.recv(65536)
    except ConnectionResetError:
        answer = b""        # closed with our bytes unread (timeouts.request): a reset
    sock.close()
    listener.close()
    # What was taken sits in socket buffers on both legs (autotuned up to
    # tcp_rmem/tcp_wmem's maximum each) and one pipe: the balancer holds none.
    assert sent < 2 * (kernel_max("tcp_rmem") + kernel_max("tcp_wmem")) + (1 << 20), sent
    assert grown < 8 * 1024, grown
    print(f"upload to a backend that never reads: {sent >> 10} KiB taken, worker RSS +{grown} KiB")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 504"), answer


def test_thousands_of_admin_connections_and_garbage_do_not_slow_requests(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(topo, ["b1"]))
    client = Client(topo)

    def rate(seconds: float) -> float:
        done, started = 0, time.monotonic()
        conn = client.connection()
        while time.monotonic() - started < seconds:
            conn.request("GET", "/r")
            assert conn.getresponse().read() is not None
            done += 1
        conn.close()
        return done / seconds

    quiet = rate(1.0)
    path = str(topo.tmp / "admin.sock")
    abusers = []
    for i in range(2000):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        sock.setblocking(False)
        try:
            sock.send(os.urandom(512) if i % 2 else b"x" * 70000)   # garbage, over-long lines
        except BlockingIOError:
            pass
        abusers.append(sock)
    busy = rate(1.0)
    assert lbctl(topo, "status").returncode == 0          # the admin socket still answers
    for sock in abusers:
        sock.close()
    assert busy > 0.5 * quiet, (quiet, busy)
    print(f"requests/s on one connection: {quiet:.0f} quiet, {busy:.0f} under the admin flood")
