"""Circuit breakers end to end: backends switched into faults at run time
(dataplane/testing/faults.py) behind the real balancer; what each backend
received is counted by the backend itself."""

from __future__ import annotations

import json
import re
import threading
import time

from conftest import Client, ask_backend, balancer_config, lbctl
from load import Load

# Probes go to /_health, which faults never touch: health stays up, so what
# takes a backend out in these tests is its breaker.
HEALTH = "health: {path: /_health, interval: 200ms}\n"


def site(topology, breaker: str, backends=("b1", "b2", "b3"), workers: int = 2, extra=""):
    topo = topology(["client", "lb", *backends])
    for name in backends:
        topo.python_backend(name, name)
    config = balancer_config(topo, list(backends),
                             extra=HEALTH + f"breaker: {{{breaker}}}\n" + extra)
    lb = topo.balancer("lb", config.replace("workers: 1", f"workers: {workers}"))
    return topo, lb


def tripped(topo, name: str, fault: str, timeout: float) -> str:
    """Switch the backend into ``fault``; the reason its breaker opened."""
    ask_backend(topo, name, f"/_fault/{fault}")
    return wait_breaker(topo, name, "open", timeout)["transitions"][-1]["reason"]


def seen(topo, name: str) -> int:
    """Requests the backend has received (its control routes aside)."""
    return json.loads(ask_backend(topo, name, "/_stats"))["requests"]


def settled(topo, name: str, quiet: float = 0.25, timeout: float = 1.0) -> int:
    """The backend's request count once it has held still for ``quiet`` seconds
    (``timeout`` at most): on a loaded machine, requests a worker sent before
    it learned that the breaker opened arrive late."""
    deadline = time.monotonic() + timeout
    count, still_since = seen(topo, name), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - still_since < quiet:
        time.sleep(0.05)
        now = seen(topo, name)
        if now != count:
            count, still_since = now, time.monotonic()
    return count


def breaker(topo, name: str) -> dict:
    result = lbctl(topo, "breaker", f"{topo.hosts[name]}:8000", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def wait_breaker(topo, name: str, phase: str, timeout: float, trips: int = 0) -> dict:
    """The breaker's row once it is in ``phase`` (after at least ``trips`` trips in a row)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = breaker(topo, name)
        if row["breaker"] == phase and row["trips_in_a_row"] >= trips:
            return row
        time.sleep(0.01)
    raise AssertionError(f"{name} breaker not {phase} within {timeout}s: {breaker(topo, name)}")


def test_a_5xx_burst_opens_the_breaker_then_one_trial_then_closed(topology):
    topo, lb = site(topology, "open_for: 3s")
    with Load(topo, clients=4, seconds=20):
        time.sleep(0.5)
        reason = tripped(topo, "b2", "status-500", 3)
        assert "failures in a row" in reason or "calls failed" in reason
        count = settled(topo, "b2")
        time.sleep(1.5)                                  # open for 3 s: nothing reaches it
        assert seen(topo, "b2") == count
        reopened = wait_breaker(topo, "b2", "open", 3, trips=2)   # the trial failed...
        assert seen(topo, "b2") == count + 1             # ...and it was exactly one request
        assert reopened["transitions"][-1]["reason"] == "a trial call failed"
        assert 5.0 < reopened["open_left_s"] <= 6.0      # open again, twice as long
        ask_backend(topo, "b2", "/_fault/ok")
        closed = wait_breaker(topo, "b2", "closed", 8)
        assert closed["transitions"][-1]["reason"] == "1 trial calls passed"
        time.sleep(0.5)
        assert seen(topo, "b2") > count + 5              # back in the rotation
    text = lbctl(topo, "backends").stdout
    assert "closed" in text


def test_a_failure_rate_trips_without_failures_in_a_row(topology):
    topo, lb = site(topology, "consecutive_failures: 1000, window: 40, min_calls: 40, "
                              "failure_rate: 40", workers=1)
    with Load(topo, clients=4, seconds=15):
        time.sleep(0.3)
        reason = tripped(topo, "b2", "status-503-60", 8)
    failed = re.search(r"(\d+) of the last 40 calls failed$", reason)
    assert failed and int(failed.group(1)) >= 16, reason


def test_slow_calls_trip_the_breaker(topology):
    topo, lb = site(topology, "slow_call: 100ms, window: 10, min_calls: 10, slow_call_rate: 80")
    with Load(topo, clients=6, seconds=15):
        time.sleep(0.3)
        assert tripped(topo, "b2", "slow-250", 10).endswith("calls were slow")


def test_half_open_lets_exactly_the_permitted_trials_through_across_workers(topology):
    topo, lb = site(topology, "open_for: 2s, half_open_calls: 3", workers=2)
    with Load(topo, clients=6, seconds=15):
        time.sleep(0.3)
        tripped(topo, "b2", "status-500", 3)
        ask_backend(topo, "b2", "/_fault/slow-1500")     # trials pass, slowly
        count = settled(topo, "b2")
        half = wait_breaker(topo, "b2", "half_open", 3)
        time.sleep(1.0)                                # trials under way, none back yet
        assert seen(topo, "b2") - count == 3
        assert half["half_open"]["trials"] == 3
        closed = wait_breaker(topo, "b2", "closed", 5)
    assert closed["transitions"][-1]["reason"] == "3 trial calls passed"


def test_max_ejection_percent_keeps_half_the_backends_in(topology):
    names = ("b1", "b2", "b3", "b4")
    topo, lb = site(topology, "open_for: 30s", backends=names)
    with Load(topo, clients=4, seconds=10):
        time.sleep(0.3)
        for name in names:
            ask_backend(topo, name, "/_fault/status-500")
        time.sleep(2.0)
        rows = [breaker(topo, name) for name in names]
    assert sorted(r["breaker"] for r in rows) == ["closed", "closed", "open", "open"], rows
    assert sum(r["refused_by_ejection_cap"] for r in rows) > 0


def test_lbctl_opens_and_closes_a_breaker(topology):
    topo, lb = site(topology, "")
    b2 = f"{topo.hosts['b2']}:8000"
    result = lbctl(topo, "backend", "set", b2, "breaker", "open")
    assert result.returncode == 0 and "breaker open" in result.stdout, result.stdout
    with Load(topo, clients=4, seconds=10):
        time.sleep(0.3)
        count = seen(topo, "b2")
        time.sleep(1.0)
        assert seen(topo, "b2") == count
        assert breaker(topo, "b2")["transitions"][-1]["reason"] == "set by lbctl"
        shown = lbctl(topo, "breaker", b2).stdout           # what an operator reads
        assert "set by lbctl" in shown and "max_requests" in shown, shown
        assert lbctl(topo, "backend", "set", b2, "breaker", "closed").returncode == 0
        time.sleep(0.5)
        assert seen(topo, "b2") > count
    bad = lbctl(topo, "backend", "set", b2, "breaker", "ajar")
    assert bad.returncode != 0 and "breaker must be closed or open" in bad.stderr + bad.stdout


def test_max_requests_caps_the_backend_and_the_rest_get_503_at_once(topology):
    topo, lb = site(topology, "max_requests: 5", backends=("b1",), workers=2)
    ask_backend(topo, "b1", "/_fault/slow-1500")
    socks = [topo.connect("client", "lb", 8080, timeout=5) for _ in range(20)]
    answers: list[tuple[float, bytes]] = []
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        sent = time.monotonic()
        for sock in socks:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            answers.append((time.monotonic() - sent, data))
    finally:
        for sock in socks:
            sock.close()
    stats = json.loads(ask_backend(topo, "b1", "/_stats"))
    assert stats["max_concurrent"] <= 5 and stats["requests"] <= 5, stats
    refused = [(t, a) for t, a in answers if a.startswith(b"HTTP/1.1 503")]
    served = [a for _, a in answers if a.startswith(b"HTTP/1.1 200")]
    assert len(refused) + len(served) == 20 and len(refused) >= 15, answers
    for _, answer in refused:
        assert b"\r\nX-L7lb-Overloaded: max_requests\r\n" in answer
        assert b"\r\nRetry-After: 1\r\n" in answer
    # Read in order, so only the first refused answer's time is its own: the
    # balancer logs each one's time from request head to answer.
    times = [json.loads(line)["ms"] for line in open(lb.log_path)
             if '"event":"request"' in line and '"status":503' in line]
    assert len(times) == len(refused) and max(times) < 10, times
    result = lbctl(topo, "breaker", f"{topo.hosts['b1']}:8000", "--json")
    limits = json.loads(result.stdout)[0]["limits"]["max_requests"]
    assert limits["limit"] == 5 and limits["refused"] == len(refused), limits


def test_an_unused_half_open_lease_moves_to_the_worker_that_has_the_traffic(topology):
    """One keep-alive client connection: all requests reach one worker. The
    trial permits, if first leased to the other worker, move on after 1 s."""
    topo, lb = site(topology, "open_for: 1s", workers=2)
    stop = threading.Event()

    def client() -> None:
        conn = Client(topo).connection()
        try:
            while not stop.is_set():
                conn.request("GET", "/")
                conn.getresponse().read()
                time.sleep(0.01)
        finally:
            conn.close()
    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(0.3)
        tripped(topo, "b2", "status-500", 3)
        ask_backend(topo, "b2", "/_fault/ok")
        moves = wait_breaker(topo, "b2", "closed", 6)["transitions"]
    finally:
        stop.set()
        thread.join(10)
    half = [t["at"] for t in moves if t["to"] == "half_open"][-1]
    closed = moves[-1]["at"]
    assert closed - half < 2.5, moves               # at most one lease moved (1 s + an ack)
