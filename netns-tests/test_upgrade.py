"""Never down (docs/process.md): ``lbctl upgrade`` to other code under load
loses no request, carries the run-time state, and a failed one changes
nothing; workers orphaned by a killed control process serve on until a new
``lbctl run`` takes them over, or drain after ``timeouts.orphan``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections import Counter
from pathlib import Path

from certs import CA
from conftest import Client, balancer_config, lbctl
from steady_load import SteadyLoad

ROOT = Path(__file__).resolve().parent.parent


# -- releases: copies of the code, "the code installed now" a symlink --------
def release(topo, name: str, edit=None) -> Path:
    """A copy of dataplane/ and lbctl/ (bpf/ linked), its version marked
    ``0.1.0+NAME``; ``edit(root)`` changes it further."""
    root = topo.tmp / "releases" / name
    for package in ("dataplane", "lbctl"):
        shutil.copytree(ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (root / "bpf").symlink_to(ROOT / "bpf")
    init = root / "dataplane" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"',
                                             f'__version__ = "0.1.0+{name}"'))
    if edit is not None:
        edit(root)
    return root


def install(topo, root: Path) -> None:
    """Make ``root`` the code a new process imports (one atomic rename)."""
    link, new = topo.tmp / "code", topo.tmp / "code.new"
    new.symlink_to(root)
    os.replace(new, link)


def installed(topo, name: str) -> dict[str, str]:
    """The environment of a balancer running the installed release ``name``."""
    install(topo, release(topo, name))
    return {"PYTHONPATH": str(topo.tmp / "code")}


def status(topo) -> dict:
    shown = lbctl(topo, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def upgrade(topo, *args: str) -> subprocess.CompletedProcess:
    return lbctl(topo, "upgrade", *args)


def balancer_pids(topo) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", topo.ns("lb")], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def footprint(topo) -> tuple[int, int, int]:
    """Processes in the balancer's namespace, their descriptors and their
    resident memory in KiB."""
    pids, fds, rss = balancer_pids(topo), 0, 0
    for pid in pids:
        try:
            fds += len(os.listdir(f"/proc/{pid}/fd"))
            rss += int(next(line.split()[1] for line in open(f"/proc/{pid}/status")
                            if line.startswith("VmRSS")))
        except (FileNotFoundError, StopIteration):
            pass
    return len(pids), fds, rss


def wait_for(check, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(step)
    return result


def answering_pids(topo, lb) -> Counter:
    """Which worker answered each logged request (access lines carry its pid)."""
    return Counter(json.loads(line)["pid"] for line in topo.log(lb).splitlines()
                   if '"event":"request"' in line)


def site(topology, backends=("b1", "b2"), workers: int = 2, extra: str = "",
         release_name: str = "a", mode: str = "http"):
    topo = topology(["client", "lb", *backends])
    for name in backends:
        topo.python_backend(name, name, tcp=mode == "tcp")
    env = installed(topo, release_name)
    config = balancer_config(topo, list(backends), mode=mode, extra=extra) \
        .replace("workers: 1", f"workers: {workers}")
    lb = topo.balancer("lb", config, env=env)
    topo.worker_pids(lb, workers)
    return topo, lb


# -- upgrades ----------------------------------------------------------------
def test_ten_upgrades_under_load_lose_nothing_and_leave_nothing_behind(topology):
    # Idle upstream connections close after 1 s: what the pools keep from the
    # load is not counted as left behind.
    topo, lb = site(topology, extra="pool: {idle_timeout: 1s}\n")
    releases = {name: release(topo, name) for name in ("b", "c")}
    Client(topo).request("GET", "/warm")
    wait_for(lambda: status(topo)["workers"][0]["state"] == "serving", 5)
    before = footprint(topo)
    versions, pids = [], [status(topo)["pid"]]
    with SteadyLoad(topo, seconds=120, websockets=1, session=1.0) as load:
        time.sleep(0.5)
        for n in range(10):
            name = "bc"[n % 2]
            install(topo, releases[name])
            done = upgrade(topo)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "serves" in done.stdout
            shown = status(topo)
            versions.append(shown["version"])
            pids.append(shown["pid"])
        load.halt.set()
    summary = load.summary()
    print("ten upgrades under load:", summary)
    assert versions == [f"0.1.0+{'bc'[n % 2]}" for n in range(10)]
    assert len(set(pids)) == 11                   # a new control process each time
    assert summary["failures"] == 0 and summary["refused"] == 0, summary["why"]
    assert summary["requests"] > 500
    answered = answering_pids(topo, lb)
    assert len(answered) >= 11 * 2 - 2, answered   # old and new workers answered
    # Every old process drains and exits: what is left is one balancer's worth.
    wait_for(lambda: len(balancer_pids(topo)) == before[0], 40)
    time.sleep(2.5)                         # the load's idle pooled connections close
    after = footprint(topo)
    print("processes, descriptors, KiB before and after:", before, after)
    assert after[1] <= before[1] + 4, (before, after)
    assert after[2] <= before[2] * 1.25, (before, after)


def test_run_time_state_survives_an_upgrade(topology):
    topo, lb = site(topology, backends=("b1", "b2", "b3", "b4"),
                    extra="health: {interval: 200ms, fall: 1, timeout: 200ms}\n")
    hosts = {name: f"{topo.hosts[name]}:8000" for name in ("b1", "b2", "b3", "b4")}
    config = topo.tmp / "balancer.yaml"
    config.write_text(config.read_text().replace(f"  - {{host: {topo.hosts['b3']}, port: 8000}}\n",
                                                 ""))
    assert lbctl(topo, "reload").returncode == 0
    assert lbctl(topo, "backend", "add", hosts["b3"], "--weight", "50").returncode == 0
    assert lbctl(topo, "backend", "set", hosts["b2"], "state", "drain").returncode == 0
    assert lbctl(topo, "backend", "set", hosts["b1"], "breaker", "open").returncode == 0
    topo.procs[3].kill()                                     # b4: down by health
    wait_for(lambda: _rows(topo)[hosts["b4"]]["health"] == "down", 5)
    wait_for(lambda: _rows(topo)[hosts["b3"]]["health"] == "up", 5)
    window = _health(topo)[hosts["b3"]]["window"]["samples"]
    before = _rows(topo)
    old = status(topo)["pid"]
    kept = topo.connect("client", "lb", 8080, timeout=5)      # a keep-alive client
    assert b"Connection: close" not in _ask(kept)
    done = upgrade(topo)
    assert done.returncode == 0, done.stderr
    assert f"process {old} drains and exits" in done.stdout
    shown = lbctl(topo, "status").stdout          # the kept connection holds the old one
    assert f"draining: process {old} (taken over" in shown and f"pid {old}," not in shown
    # Its next request is answered by the draining worker, with Connection: close.
    last = _ask(kept)
    assert last.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in last, last
    assert kept.recv(100) == b""
    kept.close()
    after = _rows(topo)                      # at once: nothing was relearned
    assert status(topo)["pid"] != old
    for name in hosts.values():
        for key in ("state", "health", "breaker", "weight"):
            assert after[name][key] == before[name][key], (name, key, before, after)
    assert after[hosts["b3"]]["weight"] == 50
    assert after[hosts["b2"]]["state"] == "drain" and after[hosts["b1"]]["breaker"] == "open"
    assert after[hosts["b4"]]["health"] == "down"
    assert _health(topo)[hosts["b3"]]["window"]["samples"] >= window    # phi's window came too
    for _ in range(20):                      # only b3 may take requests
        response, body = Client(topo).request("GET", "/who")
        assert response.status == 200 and json.loads(body)["backend"] == "b3"


def _ask(sock) -> bytes:
    """One GET on a kept connection: the response head and its body."""
    sock.sendall(b"GET /kept HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _rows(topo) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads(lbctl(topo, "backends", "--json").stdout)}


def _health(topo) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads(lbctl(topo, "health", "--json").stdout)}


def _broken_import(root: Path) -> None:
    serve = root / "dataplane" / "serve.py"
    serve.write_text(serve.read_text() + "\nraise ImportError('broken on purpose')\n")


def _worker_exits(root: Path) -> None:
    run = root / "dataplane" / "worker" / "run.py"
    text = run.read_text()
    marker = '    profile_dir = os.environ.get("L7LB_PROFILE")\n'
    assert marker in text
    run.write_text(text.replace(marker, "    os._exit(3)\n" + marker))


def test_a_failed_upgrade_changes_nothing_and_says_why(topology):
    topo, lb = site(topology)
    bad = topo.tmp / "bad.yaml"
    bad.write_text("balancer: {port: 8080, workers: many}\n")
    first = status(topo)
    with SteadyLoad(topo, seconds=60, downloads=0, websockets=0) as load:
        refused = upgrade(topo, "-c", str(bad))
        assert refused.returncode == 1
        assert "configuration error" in refused.stderr and "workers" in refused.stderr
        install(topo, release(topo, "broken", _broken_import))
        refused = upgrade(topo)
        assert refused.returncode == 1
        assert "the new code does not import: ImportError('broken on purpose')" in refused.stderr
        install(topo, release(topo, "dies", _worker_exits))
        refused = upgrade(topo)
        assert refused.returncode == 1
        assert "worker 0 died" in refused.stderr and "exit code 3" in refused.stderr
        time.sleep(0.5)
        load.halt.set()
    summary = load.summary()
    print("failed upgrades under load:", summary)
    assert summary["failures"] == 0 and summary["refused"] == 0, summary["why"]
    now = status(topo)
    assert now["pid"] == first["pid"] and now["version"] == "0.1.0+a"
    assert [w["pid"] for w in now["workers"]] == [w["pid"] for w in first["workers"]]
    assert not now["draining"] and not now["succeeded_by"]
    assert lb.poll() is None
    assert not (topo.tmp / "admin.sock.new").exists()


def test_tcp_streams_cross_an_upgrade_whole_to_fewer_workers(topology):
    """Two listeners handed to one worker: it serves both (the surplus one is
    never closed, nor left without a worker: a stream hashed there would hang)."""
    topo, _ = site(topology, mode="tcp")
    fewer = topo.tmp / "one-worker.yaml"
    fewer.write_text((topo.tmp / "balancer.yaml").read_text().replace("workers: 2", "workers: 1"))
    with SteadyLoad(topo, seconds=60, keepalive=0, fresh=0, downloads=0, websockets=0,
                    streams=3) as load:
        time.sleep(1.0)
        install(topo, release(topo, "b"))
        assert upgrade(topo, "-c", str(fewer)).returncode == 0
        time.sleep(1.5)
        load.halt.set()
    summary = load.summary()
    print("tcp streams across an upgrade:", summary)
    assert summary["failures"] == 0 and summary["refused"] == 0, summary["why"]
    assert summary["requests"] >= 3
    assert status(topo)["version"] == "0.1.0+b" and len(status(topo)["workers"]) == 1


def test_https_sessions_resume_across_an_upgrade(topology):
    topo = topology(["client", "lb", "b1"])
    ca = CA(topo.tmp / "pki")
    cert, key = ca.issue("a", "/CN=a.test", "subjectAltName=DNS:a.test")
    topo.python_backend("b1", "b1")
    env = installed(topo, "a")
    topo.balancer("lb", f"balancer: {{port: 8443, bind: {topo.hosts['lb']}, workers: 2, "
                        f"tls: {{certificates: [{{cert: {cert}, key: {key}}}]}}}}\n"
                        f"backends: [{{host: {topo.hosts['b1']}, port: 8000}}]\n"
                        f"admin: {{socket: {topo.tmp / 'admin.sock'}}}\n", port=8443, env=env)
    context = ssl.create_default_context(cafile=str(ca.pem))

    def get(session=None) -> ssl.SSLSocket:
        raw = topo.connect("client", "lb", 8443, timeout=5)
        sock = context.wrap_socket(raw, server_hostname="a.test", session=session)
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        return sock

    session = None
    for _ in range(3):                       # TLS 1.3 tickets come after the handshake
        session = get().session
        if session is not None and session.has_ticket:
            break
    install(topo, release(topo, "b"))
    assert upgrade(topo).returncode == 0
    assert status(topo)["version"] == "0.1.0+b"
    for _ in range(6):                       # on both new workers
        assert get(session).session_reused


# -- a control process that dies -----------------------------------------------
def test_a_new_run_takes_over_orphaned_workers_without_a_failure(topology):
    topo, lb = site(topology)
    config = str(topo.tmp / "balancer.yaml")
    orphans = [w["pid"] for w in status(topo)["workers"]]
    with SteadyLoad(topo, seconds=60, websockets=1, session=1.0) as load:
        time.sleep(1.0)
        os.kill(lb.pid, signal.SIGKILL)
        killed = time.monotonic()
        time.sleep(1.0)
        env = {"PYTHONPATH": str(topo.tmp / "code")}
        again = topo.spawn("lb", [str(ROOT / ".venv" / "bin" / "lbctl"), "run", "-c", config],
                           log_name="balancer-again.log", env=env)
        wait_for(lambda: '"event":"took over"' in topo.log(again), 15)
        time.sleep(1.5)
        load.halt.set()
    summary = load.summary()
    print(f"control process killed, new run {time.monotonic() - killed:.1f}s ago:", summary)
    assert summary["failures"] == 0 and summary["refused"] == 0, summary["why"]
    took = json.loads(next(line for line in topo.log(again).splitlines()
                           if '"event":"took over"' in line))
    assert sorted(took["pids"]) == sorted(orphans) and took["upgrade"] is False
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in orphans), 15)
    assert not list(topo.tmp.glob("admin.sock.orphan-*"))
    assert Client(topo).request("GET", "/after")[0].status == 200
    assert status(topo)["pid"] == again.pid


def test_orphaned_workers_serve_on_then_drain_when_nobody_comes(topology):
    topo, lb = site(topology, extra="timeouts: {orphan: 2s}\n")
    workers = [w["pid"] for w in status(topo)["workers"]]
    os.kill(lb.pid, signal.SIGKILL)
    killed = time.monotonic()
    for _ in range(5):
        assert Client(topo).request("GET", "/orphaned")[0].status == 200
    assert len(list(topo.tmp.glob("admin.sock.orphan-*"))) == 2
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), 10)
    assert time.monotonic() - killed >= 1.9
    assert not list(topo.tmp.glob("admin.sock.orphan-*"))
