"""Several balancers as one fleet through a real etcd (Debian's etcd-server)
in its own namespace: probe sharding, fleet-wide verdicts, takeover after a
balancer dies, the shared backend set, and etcd going away."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import pytest

from fleet import INTERVAL, TTL, Fleet, at, logged, probes_per_interval
from load import Load

pytestmark = pytest.mark.skipif(not shutil.which("etcd"), reason="needs etcd (scripts/setup)")


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
    fleet = Fleet(topology, replicas=1)       # one prober each: the victim's go unprobed
    fleet.joined(fleet.lbs)
    time.sleep(0.5)
    probing = {lb: fleet.fleet(lb)["probing"] for lb in fleet.lbs}
    victim = max(fleet.lbs, key=lambda lb: len(probing[lb]))
    orphans = [b for b in fleet.backend_hosts if fleet.address(b) in probing[victim]]
    for b in fleet.backend_hosts:
        fleet.stats(b, "/_reset")
    fleet.procs[victim].send_signal(signal.SIGKILL)
    survivors = [lb for lb in fleet.lbs if lb != victim]
    fleet.joined(survivors, timeout=TTL + 2)
    time.sleep(1.0)
    gaps = {b: fleet.stats(b)["max_gap_ms"] for b in fleet.backend_hosts}
    # Its backends waited for its lease to expire (lease_ttl after its last
    # renewal, which came every third of it), and no longer than the lease and
    # one interval (with its jitter, and etcd's lease checks every 500 ms).
    assert all(gaps[b] >= (TTL * 2 / 3 - 0.2) * 1000 for b in orphans), (orphans, gaps)
    assert all(gap <= (TTL + INTERVAL * 1.1 + 0.5) * 1000 for gap in gaps.values()), gaps
    rates = probes_per_interval(fleet, 2.0)
    assert all(0.8 <= rate <= 1.2 for rate in rates.values()), rates
    assert all(row["probers"][0] in survivors for row in fleet.fleet(survivors[0])["backends"])


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
        fleet.etcd["etcd1"].send_signal(signal.SIGKILL)
        fleet.etcd["etcd1"].wait()
        fleet.wait(lambda: fleet.fleet("lb1")["mode"] == "degraded", TTL + 2, "degraded")
        assert "fleet degraded" in fleet.ctl("lb1", "status").stdout
        time.sleep(0.5)
        rates = probes_per_interval(fleet, 2.0)
        assert all(rate >= 1.6 for rate in rates.values()), rates   # both probe all
        fleet.etcd["etcd1"] = fleet.start_etcd("etcd1")
        fleet.joined(fleet.lbs, timeout=10)
        time.sleep(1.0)
    assert load.statuses and set(load.statuses) == {200}, load.failures
    rates = probes_per_interval(fleet, 2.0)
    assert all(0.7 <= rate <= 1.3 for rate in rates.values()), rates   # one prober again


def cut_off(topo, host: str, addresses: list[str]) -> None:
    """Drop everything ``host`` sends to these addresses (an empty list heals)."""
    script = "flush ruleset\n"
    if addresses:
        script += ("table inet cut {\n chain out {\n  type filter hook output priority 0;\n"
                   f"  ip daddr {{ {', '.join(addresses)} }} drop\n }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", topo.ns(host), "nft", "-f", "-"],
                   input=script.encode(), check=True, capture_output=True)


def test_a_balancer_cut_off_from_etcd_serves_on_and_its_word_expires(topology):
    fleet = Fleet(topology, count=3, backends=3, client=True, etcd_members=3)
    fleet.joined(fleet.lbs)
    etcd = [fleet.topo.hosts[e] for e in fleet.etcd_hosts]
    with Load(fleet.topo, clients=2, seconds=20, target="lb3") as load:
        time.sleep(0.5)
        cut_off(fleet.topo, "lb3", etcd)
        fleet.joined(["lb1", "lb2"], timeout=TTL + 3)
        fleet.wait(lambda: fleet.fleet("lb3")["mode"] == "degraded", TTL + 2, "lb3 degraded")
        rows = fleet.fleet("lb1")["backends"]
        assert all("lb3" not in row["observations"] and "lb3" not in row["probers"]
                   for row in rows), rows
        time.sleep(1.0)
        cut_off(fleet.topo, "lb3", [])
        fleet.joined(fleet.lbs, timeout=10)
    assert load.statuses and set(load.statuses) == {200}, load.failures

    # etcd's first member dies: every balancer moves on to the next endpoint.
    # When it was etcd's leader, the others elect one first (etcd's election
    # timeout, 1 s, randomized up to twice that), so a balancer may be
    # degraded for a moment: it must be back within a lease and that election.
    fleet.etcd["etcd1"].send_signal(signal.SIGKILL)
    fleet.wait(lambda: [fleet.fleet(lb)["mode"] for lb in fleet.lbs] == ["ok"] * 3,
               TTL + 3, "every balancer on the next etcd endpoint")
    fleet.joined(fleet.lbs)
    # A write may still meet the election's end (etcd answers it with a timeout,
    # lbctl says so): an operator tries again, so does the test, within one more.
    deadline = time.monotonic() + 3.0
    while (added := fleet.ctl("lb2", "backend", "add", f"{fleet.topo.hosts['client']}:8000")
           ).returncode != 0 and "fleet_unavailable" in added.stderr \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert added.returncode == 0, added.stderr
    fleet.wait(lambda: f"{fleet.topo.hosts['client']}:8000" in fleet.health("lb1"), 1.0,
               "lb1 has the backend added on lb2")


class ManyBackends(Fleet):
    """lb1's file names 300 backends (ports of b1), lb2's only b1:8000."""

    def config(self, lb: str) -> str:
        text = super().config(lb).replace("interval: 100ms", "interval: 10s")
        if lb == "lb1":
            many = "".join(f"  - {{host: {self.topo.hosts['b1']}, port: {p}}}\n"
                           for p in range(20000, 20300))
            text = text.replace("backends:\n", "backends:\n" + many)
        return text


def test_an_empty_fleet_is_seeded_by_the_first_file_and_later_files_do_not_count(topology):
    fleet = ManyBackends(topology, count=2, backends=1, start=1)
    fleet.joined(["lb1"])
    assert len(fleet.health("lb1")) == 301      # more than one etcd transaction's worth
    fleet.procs["lb2"] = fleet.start("lb2")
    fleet.joined(fleet.lbs)
    fleet.wait(lambda: len(fleet.health("lb2")) == 301, 2, "lb2 has the fleet's backends")
    assert '"event":"fleet backend set seeded from this file"' not in fleet.topo.log(
        fleet.procs["lb2"])


def test_a_fleet_joins_an_etcd_that_wants_tls_client_certificates(topology):
    fleet = Fleet(topology, count=1, backends=1, tls=True)
    fleet.joined(["lb1"])
    assert fleet.fleet("lb1")["etcd"]["endpoint"].startswith("https://")


def test_a_fleet_joins_an_etcd_with_passwords_and_a_wrong_one_serves_alone(topology):
    fleet = Fleet(topology, count=2, backends=2, password="s3cret", start=1)
    fleet.joined(["lb1"])
    fleet.password = "wrong"
    fleet.procs["lb2"] = fleet.start("lb2")
    time.sleep(TTL + 1)
    view = fleet.fleet("lb2")
    assert view["mode"] == "degraded" and "authentication" in view["etcd"]["error"], view
    assert sorted(fleet.health("lb2")) == sorted(fleet.address(b) for b in fleet.backend_hosts)
    assert fleet.fleet("lb1")["members"] == ["lb1"]


def test_an_upgraded_member_stays_the_same_member_of_the_fleet(topology):
    """lbctl upgrade carries the member's etcd lease: the new process keeps
    it alive, the old one does not revoke it, so the other members never see
    this one leave (its member key and observations live on the lease)."""
    fleet = Fleet(topology, count=2, backends=2)
    fleet.joined(fleet.lbs)
    before = fleet.ctl("lb1", "status", "--json")
    lease = fleet.fleet("lb1")["lease"]
    done = fleet.ctl("lb1", "upgrade")
    assert done.returncode == 0, done.stderr
    seen = set()
    deadline = time.monotonic() + 3 * TTL
    while time.monotonic() < deadline:        # past the old lease's TTL
        seen.add(tuple(fleet.fleet("lb2")["members"]))
        time.sleep(0.05)
    assert seen == {("lb1", "lb2")}, seen
    shown = fleet.fleet("lb1")
    assert shown["member"] == "lb1" and shown["mode"] == "ok" and shown["lease"] == lease
    assert json.loads(fleet.ctl("lb1", "status", "--json").stdout)["pid"] \
        != json.loads(before.stdout)["pid"]
