"""Several balancers as one fleet through a real etcd (Debian's etcd-server)
in its own namespace: probe sharding, fleet-wide verdicts, takeover after a
balancer dies, the shared backend set, and etcd going away."""

from __future__ import annotations

import json
import shutil
import signal
import time
from datetime import datetime

import pytest

from conftest import lbctl
from load import Load

pytestmark = pytest.mark.skipif(not shutil.which("etcd"), reason="needs etcd (scripts/setup)")

INTERVAL = 0.1
TTL = 2


class Fleet:
    """etcd, ``count`` balancers (lb1...) and ``backends`` (b1...) in namespaces."""

    def __init__(self, topology, count: int = 3, backends: int = 6, replicas: int = 2,
                 client: bool = False) -> None:
        self.lbs = [f"lb{i}" for i in range(1, count + 1)]
        self.backend_hosts = [f"b{i}" for i in range(1, backends + 1)]
        topo = self.topo = topology(["etcd", *self.lbs, *self.backend_hosts]
                                    + (["client"] if client else []))
        self.replicas = replicas
        self.etcd = self.start_etcd()
        self.backends = {b: topo.python_backend(b, b) for b in self.backend_hosts}
        self.procs = {lb: self.start(lb) for lb in self.lbs}

    def url(self) -> str:
        return f"http://{self.topo.hosts['etcd']}:2379"

    def start_etcd(self):
        topo, address = self.topo, self.topo.hosts["etcd"]
        proc = topo.spawn("etcd", [
            "etcd", "--name", "e1", "--data-dir", str(topo.tmp / "etcd"),
            "--listen-client-urls", self.url(), "--advertise-client-urls", self.url(),
            "--listen-peer-urls", f"http://{address}:2380",
            "--initial-advertise-peer-urls", f"http://{address}:2380",
            "--initial-cluster", f"e1=http://{address}:2380"], log_name="etcd.log")
        topo.wait_port("etcd", 2379, from_host="etcd", proc=proc)
        return proc

    def config(self, lb: str) -> str:
        topo = self.topo
        backends = "\n".join(f"  - {{host: {topo.hosts[b]}, port: 8000}}"
                             for b in self.backend_hosts)
        return (f"balancer: {{port: 8080, bind: {topo.hosts[lb]}, workers: 1}}\n"
                f"backends:\n{backends}\n"
                f"admin: {{socket: {topo.tmp / lb}.sock}}\n"
                f"health: {{interval: {int(INTERVAL * 1000)}ms, slow_start: 0s}}\n"
                f"fleet: {{etcd: [\"{self.url()}\"], name: {lb}, prefix: /l7lb/test, "
                f"probe_replicas: {self.replicas}, lease_ttl: {TTL}s, timeout: 500ms}}\n")

    def start(self, lb: str):
        return self.topo.balancer(lb, self.config(lb), name=lb)

    def ctl(self, lb: str, *args: str):
        return lbctl(self.topo, *args, socket=f"{lb}.sock")

    def fleet(self, lb: str) -> dict:
        result = self.ctl(lb, "fleet", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def health(self, lb: str) -> dict[str, str]:
        result = self.ctl(lb, "backends", "--json")
        assert result.returncode == 0, result.stderr
        return {row["name"]: row["health"] for row in json.loads(result.stdout)}

    def address(self, backend: str) -> str:
        return f"{self.topo.hosts[backend]}:8000"

    def wait(self, check, timeout: float, what: str) -> float:
        """Seconds until ``check()`` is true."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if check():
                return time.monotonic() - started
            time.sleep(0.02)
        raise AssertionError(f"not within {timeout}s: {what}")

    def joined(self, members: list[str], timeout: float = 10) -> None:
        for lb in members:
            self.wait(lambda: self.fleet(lb)["mode"] == "ok"
                      and self.fleet(lb)["members"] == sorted(members), timeout,
                      f"{lb} sees members {members}")

    def stats(self, backend: str, path: str = "/_stats") -> dict:
        answer = self.topo.run(backend, ["curl", "-s", f"http://{self.address(backend)}{path}"])
        return json.loads(answer.stdout) if path == "/_stats" else {}


def logged(proc, event: str) -> list[dict]:
    return [json.loads(line) for line in open(proc.log_path, errors="replace")
            if f'"event":"{event}"' in line]


def at(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def probes_per_interval(fleet: Fleet, seconds: float) -> dict[str, float]:
    for b in fleet.backend_hosts:
        fleet.stats(b, "/_reset")
    time.sleep(seconds)
    return {b: fleet.stats(b)["requests"] / (seconds / INTERVAL) for b in fleet.backend_hosts}


def test_each_backend_is_probed_by_its_shard_and_a_dead_one_leaves_every_balancer(topology):
    fleet = Fleet(topology)
    fleet.joined(fleet.lbs)
    time.sleep(0.5)
    rates = probes_per_interval(fleet, 3.0)
    # Two probers each (jittered by 10%), not three.
    assert all(1.6 <= rate <= 2.4 for rate in rates.values()), rates
    views = [fleet.fleet(lb) for lb in fleet.lbs]
    assert all(len(row["probers"]) == 2 for row in views[0]["backends"])
    assert [v["backends"][0]["probers"] for v in views] == [views[0]["backends"][0]["probers"]] * 3
    probing = {lb: set(v["probing"]) for lb, v in zip(fleet.lbs, views)}
    for row in views[0]["backends"]:
        assert {lb for lb in fleet.lbs if row["backend"] in probing[lb]} == set(row["probers"])

    dead = fleet.address("b1")
    killed = time.time()
    fleet.backends["b1"].send_signal(signal.SIGKILL)
    for lb in fleet.lbs:
        fleet.wait(lambda: fleet.health(lb)[dead] == "down", 5, f"{lb} sees b1 down")
    # When each balancer took it out (its log), by its probes or by the fleet's verdict.
    seen = {lb: min(at(line) for line in logged(fleet.procs[lb], "backend health")
                    if line["backend"] == dead and "down" in (line.get("new"), line.get("fleet")))
            - killed for lb in fleet.lbs}
    assert all(0 < delay < 1.0 for delay in seen.values()), seen
    probers = fleet.fleet("lb1")["backends"][0]
    assert all(o["state"] == "down" for o in probers["observations"].values()), probers


def test_a_killed_balancers_probes_are_taken_over_within_lease_ttl_and_an_interval(topology):
    fleet = Fleet(topology)
    fleet.joined(fleet.lbs)
    time.sleep(0.5)
    for b in fleet.backend_hosts:
        fleet.stats(b, "/_reset")
    fleet.procs["lb3"].send_signal(signal.SIGKILL)
    fleet.joined(["lb1", "lb2"], timeout=TTL + 2)
    time.sleep(1.0)
    gaps = {b: fleet.stats(b)["max_gap_ms"] for b in fleet.backend_hosts}
    # No backend waited longer than the lease and one interval (with its jitter).
    assert all(gap <= (TTL + INTERVAL * 1.1) * 1000 + 200 for gap in gaps.values()), gaps
    rates = probes_per_interval(fleet, 2.0)
    assert all(1.6 <= rate <= 2.4 for rate in rates.values()), rates
    assert all(set(row["probers"]) == {"lb1", "lb2"} for row in fleet.fleet("lb1")["backends"])


def test_a_backend_added_on_one_balancer_serves_on_another_and_drains_everywhere(topology):
    fleet = Fleet(topology, backends=2, client=True)
    fleet.joined(fleet.lbs)
    topo = fleet.topo
    extra = topo.hosts["client"]        # a third backend, on the client's host
    backend = topo.python_backend("client", "b3")
    added = fleet.ctl("lb1", "backend", "add", f"{extra}:8000")
    assert added.returncode == 0, added.stderr
    started = time.monotonic()
    fleet.wait(lambda: f"{extra}:8000" in fleet.health("lb3"), 1.0, "lb3 has the new backend")
    assert time.monotonic() - started < 1.0
    seen = set()
    for _ in range(30):
        answer = topo.run("client", ["curl", "-s", f"http://{topo.hosts['lb3']}:8080/who"])
        seen.add(json.loads(answer.stdout)["backend"])
    assert "b3" in seen, seen

    drained = fleet.ctl("lb3", "backend", "set", f"{extra}:8000", "state", "drain")
    assert drained.returncode == 0, drained.stderr
    rows = json.loads(fleet.ctl("lb1", "backends", "--json").stdout)
    assert {r["name"]: r["state"] for r in rows}[f"{extra}:8000"] == "drain"
    backend.terminate()

    reloaded = fleet.ctl("lb2", "reload")
    assert reloaded.returncode == 0 and "fleet" in reloaded.stdout, reloaded.stdout
    assert f"{extra}:8000" in fleet.health("lb2")      # the file did not override the fleet


def test_without_etcd_every_balancer_serves_and_probes_all_then_rejoins(topology):
    fleet = Fleet(topology, count=2, backends=3, replicas=1, client=True)
    fleet.joined(fleet.lbs)
    with Load(fleet.topo, clients=2, seconds=15, target="lb1") as load:
        time.sleep(0.5)
        fleet.etcd.send_signal(signal.SIGKILL)
        fleet.etcd.wait()
        fleet.wait(lambda: fleet.fleet("lb1")["mode"] == "degraded", TTL + 2, "degraded")
        assert "fleet degraded" in fleet.ctl("lb1", "status").stdout
        time.sleep(0.5)
        rates = probes_per_interval(fleet, 2.0)
        assert all(rate >= 1.6 for rate in rates.values()), rates   # both probe all
        fleet.etcd = fleet.start_etcd()
        fleet.joined(fleet.lbs, timeout=10)
        time.sleep(1.0)
    assert load.statuses and set(load.statuses) == {200}, load.failures
    rates = probes_per_interval(fleet, 2.0)
    assert all(0.7 <= rate <= 1.3 for rate in rates.values()), rates   # one prober again
