"""TCP mode end to end with every relay engine: bytes intact, half-close in
both directions, resets passed on, bytes counted."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest
from conftest import balancer_config, stats_when


@pytest.fixture(params=["splice", "copy", "sockmap", "auto"])
def tcp_site(request, topology):
    topo = topology(["client", "lb", "t1"])
    backend = topo.python_backend("t1", "t1", tcp=True)
    lb = topo.balancer("lb", balancer_config(topo, ["t1"], mode="tcp").replace(
        "workers: 1", f"workers: 1, relay: {request.param}"))
    wait_for(lambda: '"event":"worker listening"' in topo.log(lb))
    assert f'"relay":"{request.param}"' in topo.log(lb)      # no fallback, auto kept
    return topo, backend, lb


def wait_for(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def test_client_half_close_reaches_backend_and_reply_comes_back(tcp_site):
    topo, _, lb = tcp_site
    payload = bytes(range(256)) * 40_000      # ~10 MB
    sock = topo.connect("client", "lb", 8080)
    sock.sendall(payload)
    sock.shutdown(socket.SHUT_WR)             # the backend answers only after EOF
    reply = read_all(sock)
    sock.close()
    assert reply == f"t1 got {len(payload)} bytes {hashlib.sha256(payload).hexdigest()}\n".encode()
    # The connection's access line counts both directions.
    counted = f'"bytes":{len(payload) + len(reply)},'
    wait_for(lambda: counted in topo.log(lb))
    assert counted in topo.log(lb)


def test_backend_half_close_reaches_client_which_can_still_send(tcp_site):
    topo, backend, _ = tcp_site
    sock = topo.connect("client", "lb", 8080)
    sock.sendall(b"HALFCLOSE\n")
    assert read_all(sock) == b"bye\n"         # EOF from the backend arrived
    sock.sendall(b"still talking")
    sock.shutdown(socket.SHUT_WR)
    wait_for(lambda: "after halfclose" in topo.log(backend))
    sock.close()
    assert "t1 after halfclose got b'still talking'" in topo.log(backend)


def test_backend_reset_reaches_client(tcp_site):
    topo, _, _ = tcp_site
    sock = topo.connect("client", "lb", 8080)
    sock.sendall(b"RESET\n")
    with pytest.raises(ConnectionResetError):
        read_all(sock)
    sock.close()


def test_auto_tries_copy_on_a_bulk_stream_and_keeps_every_byte(topology):
    """relay: auto measures splice, then copy, on a stream that carries bulk,
    keeps the faster, and names the outcome in the connection's access line."""
    topo = topology(["client", "lb", "t1"])
    topo.python_backend("t1", "t1", tcp=True)
    lb = topo.balancer("lb", balancer_config(topo, ["t1"], mode="tcp"))
    sock = topo.connect("client", "lb", 8080)
    chunk = b"SINK" + os.urandom((4 << 20) - 4)
    digest, sent, started = hashlib.sha256(), 0, time.monotonic()
    while time.monotonic() - started < 2.5 and sent < (8 << 30):   # bulk through a trial
        sock.sendall(chunk)
        digest.update(chunk)
        sent += len(chunk)
    sock.shutdown(socket.SHUT_WR)
    reply = read_all(sock)
    sock.close()
    assert reply == f"t1 got {sent} bytes {digest.hexdigest()}\n".encode()
    counted = f'"bytes":{sent + len(reply)},'
    wait_for(lambda: counted in topo.log(lb))
    fields = json.loads(next(line for line in topo.log(lb).splitlines() if counted in line))
    assert fields["relay_trials"] >= 1
    assert fields["relay_up"] in ("splice", "copy") and fields["relay_down"] == "splice"


def test_a_connection_over_breaker_max_connections_is_reset_and_counted(topology):
    """TCP mode asks the cluster as HTTP does: a connection over the limit is
    refused, and the refusal is counted where lbctl stats and the metrics show it."""
    topo = topology(["client", "lb", "t1"])
    topo.python_backend("t1", "t1", tcp=True)
    metrics = f"{topo.hosts['lb']}:9100"
    lb = topo.balancer("lb", balancer_config(topo, ["t1"], mode="tcp", extra=(
        f"breaker: {{max_connections: 1}}\nmetrics: {{listen: \"{metrics}\"}}\n")))
    backend = f"{topo.hosts['t1']}:8000"
    wait_for(lambda: '"event":"connection"' in topo.log(lb))   # the start-up check's is over
    held = topo.connect("client", "lb", 8080)
    held.sendall(b"held open")                  # the backend reads until EOF: it stays
    stats = stats_when(topo, lambda s: s["backends"][backend]["sessions_current"] == 1)
    assert stats["backends"][backend]["sessions_current"] == 1
    with pytest.raises(ConnectionResetError):
        extra = topo.connect("client", "lb", 8080)
        try:
            extra.sendall(b"one too many")
            read_all(extra)
        finally:
            extra.close()
    stats = stats_when(topo, lambda s: s["backends"][backend]["over_max_connections"] >= 1)
    assert stats["backends"][backend]["over_max_connections"] == 1
    assert "at breaker.max_connections" in topo.log(lb)
    scraped = topo.run("client", ["curl", "-s", f"http://{metrics}/metrics"]).stdout.decode()
    assert ('l7lb_backend_over_max_connections_total{backend="%s",cluster="default"} 1.0'
            % backend) in scraped
    held.shutdown(socket.SHUT_WR)                  # the first one still goes through
    assert read_all(held).startswith(b"t1 got 9 bytes")
    held.close()


def test_refused_backend_resets_client(topology):
    topo = topology(["client", "lb", "dead"])
    topo.balancer("lb", balancer_config(topo, ["dead"], mode="tcp"))
    with pytest.raises(ConnectionResetError):    # the reset may even beat connect()
        sock = topo.connect("client", "lb", 8080)
        try:
            read_all(sock)
        finally:
            sock.close()
