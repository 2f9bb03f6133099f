"""gRPC end to end: grpcio clients (grpc_calls.py) through the real balancer
to grpcio servers (grpc_backend.py) over h2c, each call balanced on its own;
the four streaming shapes, statuses, deadlines, health by
grpc.health.v1.Health/Check, a killed backend; and h2 over TLS with ALPN."""

from __future__ import annotations

import collections
import hashlib
import json
import random
import re
import signal
import threading
import sys
import time
from pathlib import Path

import pytest

from certs import CA
from conftest import lbctl, stats_when
from topology import Topology

HERE = Path(__file__).parent
BACKENDS = ("b1", "b2", "b3")


def grpc_backend(topo: Topology, host: str, tls: tuple[str, str] | None = None):
    argv = [sys.executable, str(HERE / "grpc_backend.py"), "--name", host,
            "--address", f"{topo.hosts[host]}:8000"] + (["--tls", ":".join(tls)] if tls else [])
    proc = topo.spawn(host, argv, log_name=f"{host}.log")
    topo.wait_port(host, 8000, from_host=host)
    return proc


@pytest.fixture(scope="module")
def site():
    topo = Topology(["client", "lb", *BACKENDS])
    try:
        topo.grpc = {name: grpc_backend(topo, name) for name in BACKENDS}
        listed = ", ".join(f"{{host: {topo.hosts[b]}, port: 8000}}" for b in BACKENDS)
        topo.lb = topo.balancer("lb", (
            f"balancer: {{port: 8080, bind: {topo.hosts['lb']}, workers: 1, protocol: h2c, "
            "http2: {cleartext: true}}\n"
            f"backends: [{listed}]\n"
            "health: {type: grpc, interval: 200ms, rise: 2, fall: 2}\n"
            # Retries are judged here, not the retry budget (health.md): a third
            # of 30 calls in a row refused would exceed its default 20%.
            "retries: {min_concurrent: 100}\n"
            f"admin: {{socket: {topo.tmp / 'admin.sock'}}}\n"))
        wait_for(lambda: health(topo) == {b: "up" for b in BACKENDS}, "all backends up")
        yield topo
    finally:
        topo.close()


def calls(topo: Topology, *args: str, target: str = "lb", timeout: float = 120) -> list[dict]:
    out = topo.run("client", [sys.executable, str(HERE / "grpc_calls.py"),
                              f"{topo.hosts[target]}:{8080 if target == 'lb' else 8000}", *args],
                   timeout=timeout)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    return [json.loads(line) for line in out.stdout.decode().splitlines()]


def who(result: dict) -> str:
    """The backend that answered, or the status code."""
    return result["answers"][0].split(":")[0] if result["ok"] else result["code"]


def health(topo: Topology) -> dict[str, str]:
    rows = json.loads(lbctl(topo, "backends", "--json").stdout)
    names = {f"{topo.hosts[b]}:8000": b for b in BACKENDS}
    return {names[row["name"]]: row["health"] for row in rows if row["name"] in names}


def wait_for(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        time.sleep(0.1)


def test_one_client_connection_spreads_3000_calls_evenly(site):
    before = stats_when(site, lambda s: True)["listeners"]
    results = calls(site, "unary", "hi", "--count", "3000")
    spread = collections.Counter(who(r) for r in results)
    assert set(spread) == set(BACKENDS), spread
    assert all(900 <= spread[b] <= 1100 for b in BACKENDS), spread
    after = stats_when(site, lambda s: sum(v["http2_connections"] for v in s["listeners"].values())
                       > sum(v["http2_connections"] for v in before.values()))["listeners"]
    opened = sum(v["http2_connections"] for v in after.values()) - \
        sum(v["http2_connections"] for v in before.values())
    assert opened == 1, (before, after)       # every call on the client's one connection


def test_the_four_streaming_shapes_pass_through_whole(site):
    [server] = calls(site, "server", "100")
    assert server["ok"] and len(server["answers"]) == 100, server
    name = who(server)
    assert server["answers"] == [f"{name}:{i}" for i in range(100)]

    [client] = calls(site, "client", "200", "1000")
    rng = random.Random(7)              # the same parts grpc_calls.py sent
    digest = hashlib.sha256(b"".join(rng.randbytes(1000) for _ in range(200))).hexdigest()
    assert client["ok"] and client["answers"][0].split(":")[1:] == ["200", "200000", digest]

    [bidi] = calls(site, "bidi", "50")
    assert bidi["ok"] and [a.split(":", 1)[1] for a in bidi["answers"]] == \
        [f"m{i}" for i in range(50)], bidi


def test_a_backend_status_and_message_reach_the_client(site):
    [result] = calls(site, "unary", "fail:NOT_FOUND")
    assert result["code"] == "NOT_FOUND" and result["details"].endswith("failed it"), result


def test_the_client_deadline_is_honoured_and_passed_on(site):
    started = time.monotonic()
    [late] = calls(site, "unary", "sleep:3000", "--timeout", "0.5")
    assert late["code"] == "DEADLINE_EXCEEDED", late
    assert time.monotonic() - started < 2.5
    [told] = calls(site, "unary", "sleep:10", "--timeout", "5")
    remaining = float(told["answers"][0].split("deadline=")[1])
    assert 3.0 < remaining <= 5.0, told        # the backend saw the client's grpc-timeout


def test_a_backend_not_serving_leaves_the_rotation_and_comes_back(site):
    [result] = calls(site, "unary", "health:NOT_SERVING")
    sick = who(result)
    try:
        wait_for(lambda: health(site)[sick] == "down", f"{sick} down by its Health/Check")
        spread = collections.Counter(who(r) for r in calls(site, "unary", "x", "--count", "60"))
        assert sick not in spread and sum(spread.values()) == 60, spread
    finally:
        calls(site, "unary", "health:SERVING", target=sick)
    wait_for(lambda: health(site)[sick] != "down", f"{sick} back (in slow start)")


def test_h2_over_tls_to_grpc_backends_is_chosen_by_alpn(topology):
    topo = topology(["client", "lb", "b1"])
    ca = CA(topo.tmp / "pki")
    grpc_backend(topo, "b1", tls=ca.issue("b1", "/CN=b1.test", "subjectAltName=DNS:b1.test"))
    topo.balancer("lb", (
        f"balancer: {{port: 8080, bind: {topo.hosts['lb']}, workers: 1, protocol: h2, "
        f"http2: {{cleartext: true}}, backend_tls: {{ca: {ca.pem}, sni: b1.test}}}}\n"
        f"backends: [{{host: {topo.hosts['b1']}, port: 8000}}]\n"
        "health: {interval: 200ms}\n"
        f"admin: {{socket: {topo.tmp / 'admin.sock'}}}\n"))
    wait_for(lambda: json.loads(lbctl(topo, "backends", "--json").stdout)[0]["health"] == "up",
             "b1 up by the h2 handshake over TLS")
    results = calls(topo, "unary", "over-tls", "--count", "20")
    assert [r.get("answers") for r in results] == [["b1:over-tls"]] * 20, results


def test_lbctl_backends_shows_the_streams_on_each_connection(site):
    # Six clients, one slow call each: two per backend, on one connection each.
    slow = [threading.Thread(target=calls, args=(site, "unary", "sleep:1500")) for _ in range(6)]
    for thread in slow:
        thread.start()
    try:
        def busy() -> list[dict]:
            rows = json.loads(lbctl(site, "backends", "--json").stdout)
            return [r for r in rows if r["streams"]]
        wait_for(lambda: sum(r["streams"] for r in busy()) == 6, "6 calls under way")
        rows = busy()
        assert all(r["active"] >= 1 and r["streams"] >= r["active"] for r in rows), rows
        printed = lbctl(site, "backends").stdout
        assert re.search(r"\b\d+ \(\d+\.\d/conn\)", printed), printed
    finally:
        for thread in slow:
            thread.join(30)


def test_a_call_refused_unavailable_goes_to_another_backend_and_others_stand(site):
    b2 = f"{site.hosts['b2']}:8000"
    before = stats_when(site, lambda s: True)["backends"][b2]["retries"]
    refused = collections.Counter(who(r) for r in calls(
        site, "unary", "failon:b2:UNAVAILABLE", "--count", "30"))
    # b2's turns are retried elsewhere: no failure reaches the client.
    assert set(refused) <= {"b1", "b3"} and sum(refused.values()) == 30, refused
    after = stats_when(site, lambda s: s["backends"][b2]["retries"] > before)["backends"]
    assert after[b2]["retries"] > before, after[b2]
    # NOT_FOUND is not in retries.grpc_status: b2's answers reach the client.
    kept = collections.Counter(who(r) for r in calls(
        site, "unary", "failon:b2:NOT_FOUND", "--count", "30"))
    assert set(kept) <= {"b1", "b3", "NOT_FOUND"} and kept["NOT_FOUND"] >= 1, kept


def test_a_killed_backend_costs_at_most_unavailable_and_then_nothing(site):    # (kills b3: last)
    victim = site.grpc["b3"]
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)
    during = collections.Counter(who(r) for r in calls(site, "unary", "x", "--count", "200"))
    assert set(during) <= {"b1", "b2", "UNAVAILABLE"}, during
    assert during["b1"] + during["b2"] >= 180, during
    wait_for(lambda: health(site)["b3"] == "down", "b3 down")
    after = collections.Counter(who(r) for r in calls(site, "unary", "x", "--count", "100"))
    assert set(after) == {"b1", "b2"}, after
