"""The admin socket and lbctl's management commands against a real balancer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import Client, balancer_config, lbctl, stats_when, two_backend_site
from topology import SLOW, Topology, lbctl_path


@pytest.fixture(scope="module")
def site():
    with two_backend_site(workers=2) as topo:
        yield topo


def raw(topo: Topology, payload: bytes) -> list[dict]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(topo.tmp / "admin.sock"))
    sock.sendall(payload)
    data = b""
    while data.count(b"\n") < payload.count(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    return [json.loads(line) for line in data.splitlines()]


def names(topo: Topology, *hosts: str) -> list[str]:
    return [f"{topo.hosts[h]}:8000" for h in hosts]


def served_by(topo: Topology, count: int) -> list[str]:
    return [json.loads(Client(topo).request("GET", "/who")[1])["backend"] for _ in range(count)]


def test_status_human_and_json(site):
    # This module's first test: the workers may still be taking the first state.
    deadline = time.monotonic() + 10 * SLOW
    while time.monotonic() < deadline:
        workers = json.loads(lbctl(site, "status", "--json").stdout)["workers"]
        if all(w["state"] == "serving" and w["state_version"] >= 1 for w in workers):
            break
        time.sleep(0.1)
    human = lbctl(site, "status")
    assert human.returncode == 0 and "mode http" in human.stdout
    result = json.loads(lbctl(site, "status", "--json").stdout)
    assert result["mode"] == "http" and len(result["workers"]) == 2
    assert result["listeners"] == [f"{site.hosts['lb']}:8080"]
    # The worker table: a header, then one row per worker, each cell filled.
    lines = human.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["slot", "pid", "state"])
    rows = [line.split() for line in lines[header + 1:header + 3]]
    pids = {str(w["pid"]) for w in result["workers"]}
    assert [row[0] for row in rows] == ["0", "1"] and {row[1] for row in rows} == pids
    assert all(len(row) == 4 and row[2] == "serving" and int(row[3]) >= 1 for row in rows)


def test_backends_human_and_json(site):
    rows = json.loads(lbctl(site, "backends", "--json").stdout)
    assert [r["name"] for r in rows] == names(site, "b1", "b2")
    assert all(r["state"] == "ready" and r["weight"] == 100 for r in rows)
    human = lbctl(site, "backends").stdout
    assert all(name in human for name in names(site, "b1", "b2")) and "weight" in human


def test_weight_and_state_changes_steer_new_requests(site):
    b1, b2 = names(site, "b1", "b2")
    try:
        assert lbctl(site, "backend", "set", b1, "weight", "0").returncode == 0
        time.sleep(0.2)
        assert set(served_by(site, 6)) == {"b2"}
        lbctl(site, "backend", "set", b1, "weight", "100")
        assert lbctl(site, "backend", "set", b2, "state", "drain").returncode == 0
        time.sleep(0.2)
        assert set(served_by(site, 6)) == {"b1"}
        rows = json.loads(lbctl(site, "backends", "--json").stdout)
        assert [r["state"] for r in rows] == ["ready", "drain"]
    finally:
        lbctl(site, "backend", "set", b1, "weight", "100")
        lbctl(site, "backend", "set", b2, "state", "ready")
    time.sleep(0.2)
    assert set(served_by(site, 6)) == {"b1", "b2"}


def test_refusals_exit_1_with_the_balancers_message(site):
    result = lbctl(site, "backend", "set", "192.0.2.1:1", "weight", "5")
    assert result.returncode == 1 and "no_such_backend" in result.stderr
    result = lbctl(site, "backend", "set", names(site, "b1")[0], "state", "sleepy")
    assert result.returncode == 1 and "state must be one of" in result.stderr
    assert lbctl(site, "backend", "set", "x", "weight", "many").returncode == 2


def test_reload_rejects_a_broken_file_and_keeps_serving(site):
    broken = site.tmp / "broken.yaml"
    broken.write_text("balancer: {port: 8080}\nbackends: [{host: a}]\n")
    result = lbctl(site, "reload", "-c", str(broken))
    assert result.returncode == 1
    assert "invalid_config" in result.stderr and "backends[0]" in result.stderr
    assert Client(site).request("GET", "/still")[0].status == 200
    result = lbctl(site, "reload")
    assert result.returncode == 0 and "reloaded" in result.stdout


def test_config_show(site):
    shown = json.loads(lbctl(site, "config", "show").stdout)
    assert shown["balancer"]["workers"] == 2 and len(shown["backends"]) == 2


def test_unreachable_balancer_exits_3(tmp_path):
    result = subprocess.run([lbctl_path(), "--socket", str(tmp_path / "none.sock"), "status"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 3 and "does not exist" in result.stderr


def test_garbage_and_huge_lines_get_errors_and_the_socket_stays_usable(site):
    replies = raw(site, b"not json\n" + b'{"cmd": 5}\n' + b'{"cmd": "nope"}\n'
                  + b'{"cmd": "status", "args": []}\n' + b'{"cmd": "status"}\n')
    assert [r.get("error", {}).get("code") for r in replies] == [
        "bad_json", "bad_request", "unknown_command", "bad_args", None]
    assert replies[-1]["ok"]
    replies = raw(site, b"x" * (1 << 20) + b"\n" + b'{"cmd": "status"}\n')
    assert replies[0]["error"]["code"] == "too_long" and replies[-1]["ok"]


def test_garbage_flood_does_not_disturb_a_concurrent_client(site):
    flood = threading.Thread(target=raw, args=(site, b"garbage\n" * 1000))
    flood.start()
    for _ in range(20):
        assert lbctl(site, "status", "--json").returncode == 0
    flood.join(30)


def test_many_concurrent_clients_all_answered(site):
    results = []

    def one() -> None:
        results.append(raw(site, b'{"cmd": "backends"}\n')[0]["ok"])

    threads = [threading.Thread(target=one) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [True] * 100


def test_other_uid_is_refused(site):
    path = site.tmp / "admin.sock"
    os.chmod(path, 0o666)          # let the filesystem pass it; the peer check must refuse
    os.chmod(site.tmp, 0o755)
    code = ("import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
            "print(s.recv(4096).decode())")    # refused before any request
    try:
        result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                                text=True, timeout=30)
    finally:
        os.chmod(path, 0o600)
    assert json.loads(result.stdout.splitlines()[0])["error"]["code"] == "forbidden"


def test_second_balancer_on_the_same_socket_refuses_to_start(site):
    config = balancer_config(site, ["b1"]).replace("port: 8080", "port: 8081")
    path = site.tmp / "second.yaml"
    path.write_text(config)
    result = site.run("lb", [lbctl_path(), "run", "-c", str(path)], timeout=30)
    assert result.returncode == 1
    assert b"held by a running balancer" in result.stdout


def test_stats_human_and_json(site):
    for _ in range(5):
        Client(site).request("GET", "/counted")
    result = stats_when(site, lambda s: sum(b["http_2xx"] for b in s["backends"].values()) >= 5)
    backends = result["backends"]
    assert sum(b["http_2xx"] for b in backends.values()) >= 5
    assert sum(b["bytes_out"] for b in backends.values()) > 0
    listener = result["listeners"][f"{site.hosts['lb']}:8080"]
    assert listener["sessions_total"] >= 5
    human = lbctl(site, "stats").stdout
    assert "sessions_total" in human and names(site, "b1")[0] in human
    rows = json.loads(lbctl(site, "backends", "--json").stdout)
    assert all(r["p50_ms"] is not None for r in rows)


@pytest.fixture
def hot(topology):
    topo = topology(["client", "lb", "b1", "b2", "b3"])
    for name in ("b1", "b2", "b3"):
        topo.python_backend(name, name)
    topo.balancer("lb", balancer_config(topo, ["b1", "b2"]).replace("workers: 1", "workers: 2"))
    return topo


def test_hot_changes_under_load_fail_no_request(hot):
    b1, b2, b3 = names(hot, "b1", "b2", "b3")
    log: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def load() -> None:
        client = Client(hot)
        deadline = time.monotonic() + 15
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                response, body = client.request("GET", "/hot", timeout=5)
                log.append((time.monotonic(), response.status, json.loads(body)["backend"]))
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                log.append((time.monotonic(), 0, repr(exc)))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    steps = []
    for args in (["backend", "add", b3], ["backend", "set", b1, "state", "drain"],
                 ["backend", "set", b2, "weight", "50"], ["backend", "remove", b1]):
        time.sleep(1.0)
        result = lbctl(hot, *args)
        assert result.returncode == 0, result.stderr
        steps.append(time.monotonic())
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert log and all(status == 200 for _, status, _ in log), [e for e in log if e[1] != 200]
    after_add = {who for at, _, who in log if at > steps[0] + 0.5}
    assert "b3" in after_add
    after_drain = [who for at, _, who in log if at > steps[1] + 0.5]
    assert "b1" not in after_drain and after_drain
    rows = json.loads(lbctl(hot, "backends", "--json").stdout)
    assert [r["name"] for r in rows] == [b2, b3]


def test_drain_lets_in_flight_requests_finish(hot):
    b1, b2 = names(hot, "b1", "b2")
    lbctl(hot, "backend", "set", b2, "weight", "0")
    time.sleep(0.2)
    sock = hot.connect("client", "lb", 8080)
    sock.sendall(b"GET /slow/3000 HTTP/1.1\r\nHost: x\r\n\r\n")
    # In flight on b1 as the workers report it (a report can trail a busy worker).
    stats = stats_when(hot, lambda s: s["backends"][b1]["sessions_current"] == 1, timeout=2.0)
    assert stats["backends"][b1]["sessions_current"] == 1
    assert lbctl(hot, "backend", "set", b1, "state", "drain").returncode == 0
    lbctl(hot, "backend", "set", b2, "weight", "100")
    refused = lbctl(hot, "backend", "remove", b1, "--timeout", "0.2")
    assert refused.returncode == 1 and "busy" in refused.stderr
    data = b""
    while b'"backend"' not in data:
        data += sock.recv(65536)
    sock.close()
    assert data.startswith(b"HTTP/1.1 200") and b'"backend": "b1"' in data
    time.sleep(0.2)
    assert set(served_by(hot, 4)) == {"b2"}
    assert lbctl(hot, "backend", "remove", b1, "--force").returncode == 0


def test_stale_socket_from_a_crashed_run_is_replaced(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(topo.tmp / "admin.sock"))     # the file stays; nobody listens
    stale.close()
    topo.balancer("lb", balancer_config(topo, ["b1"]))
    assert lbctl(topo, "status").returncode == 0


def test_top_prints_frames_and_quits_on_q(site):
    once = lbctl(site, "top", "--once")
    assert once.returncode == 0 and names(site, "b1")[0] in once.stdout and "req/s" in once.stdout
    import pty
    leader, follower = pty.openpty()
    proc = subprocess.Popen([lbctl_path(), "--socket", str(site.tmp / "admin.sock"), "top",
                             "--interval", "0.2"], stdin=follower, stdout=follower,
                            stderr=follower)
    os.close(follower)
    try:
        time.sleep(1.0)
        os.write(leader, b"q")
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        os.close(leader)
    assert b"req/s" in screen


def test_admin_group_members_are_let_in(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    os.chmod(topo.tmp, 0o755)
    topo.balancer("lb", balancer_config(topo, ["b1"]).replace(
        "admin: {socket:", "admin: {group: nogroup, mode: '0660', socket:"))
    code = ("import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
            "s.sendall(b'{\"cmd\": \"status\"}\\n'); print(s.recv(65536).decode())")
    result = subprocess.run([sys.executable, "-c", code, str(topo.tmp / "admin.sock")],
                            capture_output=True, text=True, timeout=30)
    assert json.loads(result.stdout.splitlines()[0])["ok"], result.stderr


def test_unknown_admin_group_stops_the_start(topology):
    topo = topology(["client", "lb", "b1"])
    path = topo.tmp / "nogroup.yaml"
    path.write_text(balancer_config(topo, ["b1"]).replace(
        "admin: {socket:", "admin: {group: no-such-group-l7lb, socket:"))
    result = topo.run("lb", [lbctl_path(), "run", "-c", str(path)], timeout=30)
    assert result.returncode == 1 and b"no group no-such-group-l7lb" in result.stdout
