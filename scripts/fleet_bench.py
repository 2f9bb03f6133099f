"""scripts/bench-fleet: what a fleet of balancers costs and how fast it agrees.

In network namespaces (198.18.0.0/24, made and removed here): one etcd
member (Debian's etcd-server), up to five balancers (``lbctl run`` with a
``fleet`` section, ``probe_replicas: 2``, ``lease_ttl: 2s``, 100 ms probes)
and twenty Python test backends. It prints:

- probes per backend per interval with 1, 2, 3 and 5 balancers, standalone
  (no fleet section: each probes everything) and in a fleet;
- what etcd does for five balancers and twenty backends at rest: keys written
  per second (etcd's own counters) and the members' publications;
- fleet-wide detection of a crashed backend: from SIGKILL to the last of the
  five balancers taking it out (their logs);
- takeover after a balancer is killed: when the survivors saw it gone, and
  when each backend it probed got its first probe from a new balancer;
- propagation of ``lbctl backend add`` on one balancer to the other four.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-tests"))
sys.path.insert(0, str(ROOT))

from fleet import TTL, Fleet, at, logged, probes_per_interval  # noqa: E402
from topology import Topology  # noqa: E402

from lbctl.client import call  # noqa: E402


def restart(fleet: Fleet, count: int, sharded: bool) -> list[str]:
    """Only lb1..lbCOUNT running, standalone or in the fleet."""
    for proc in fleet.procs.values():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
    fleet.sharded = sharded
    running = fleet.lbs[:count]
    fleet.procs = {lb: fleet.start(lb) for lb in running}
    if sharded:
        fleet.joined(running)
    return running


def probe_load(fleet: Fleet, seconds: float) -> None:
    print("probes per backend per 100 ms interval (mean over the 20 backends)")
    print(f"{'balancers':>10} {'standalone':>11} {'fleet':>8}")
    for count in (1, 2, 3, 5):
        row = []
        for sharded in (False, True):
            restart(fleet, count, sharded)
            time.sleep(1.0)
            rates = probes_per_interval(fleet, seconds)
            row.append(sum(rates.values()) / len(rates))
        print(f"{count:>10} {row[0]:>11.2f} {row[1]:>8.2f}")


def etcd_counters(fleet: Fleet) -> dict[str, float]:
    text = fleet.topo.run("etcd1", ["curl", "-s", f"{fleet.url('etcd1')}/metrics"]).stdout.decode()
    names = ("etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_txn_total",
             "etcd_debugging_lease_renewed_total")
    return {n: float(m.group(1)) if (m := re.search(rf"^{n} (\S+)$", text, re.M)) else 0.0
            for n in names}


def etcd_cost(fleet: Fleet, seconds: float) -> None:
    before, t0 = etcd_counters(fleet), time.monotonic()
    written0 = sum(fleet.fleet(lb)["keys_written"] for lb in fleet.procs)
    time.sleep(seconds)
    after, elapsed = etcd_counters(fleet), time.monotonic() - t0
    written = sum(fleet.fleet(lb)["keys_written"] for lb in fleet.procs) - written0
    rates = {n.removeprefix("etcd_").removesuffix("_total"): (after[n] - before[n]) / elapsed
             for n in before}
    print(f"etcd at rest, 5 balancers, 20 backends, {seconds:.0f} s: "
          + ", ".join(f"{k} {v:.1f}/s" for k, v in rates.items())
          + f"; observations published {written / elapsed:.1f}/s")


def detection(fleet: Fleet, backends: list[str]) -> None:
    for backend in backends:
        address = fleet.address(backend)
        killed = time.time()
        fleet.backends[backend].send_signal(signal.SIGKILL)
        time.sleep(2.0)
        delays = []
        for lb in fleet.procs:
            downs = [at(line) for line in logged(fleet.procs[lb], "backend health")
                     if line["backend"] == address and "down" in (line.get("new"), line.get("fleet"))]
            delays.append(min(downs) - killed if downs else float("inf"))
        print(f"crash of {backend}: down on all 5 balancers after {max(delays) * 1000:.0f} ms "
              f"(first {min(delays) * 1000:.0f} ms)")


def takeover(fleet: Fleet) -> None:
    """Kill lb5; for each backend it probed, when another balancer's first probe came."""
    alive = [b for b in fleet.backend_hosts if fleet.backends[b].poll() is None]
    probed = {b for b in alive if fleet.address(b) in fleet.fleet("lb5")["probing"]}
    for b in alive:
        fleet.stats(b, "/_reset")
    time.sleep(1.0)
    before = {b: set(fleet.stats(b)["clients"]) for b in probed}     # its probers now
    killed, started = time.time(), time.monotonic()
    fleet.procs["lb5"].send_signal(signal.SIGKILL)
    socket = str(fleet.topo.tmp / "lb1.sock")
    while "lb5" in call(socket, "fleet")["members"]:
        time.sleep(0.01)
    seen_gone = time.monotonic() - started
    time.sleep(1.0)
    taken = []
    for b in probed:
        firsts = fleet.stats(b)["first_seen"]
        new = [t for client, t in firsts.items() if client not in before[b]]
        taken.append(min(new) - killed if new else float("inf"))
    print(f"balancer lb5 killed: gone from the others' view after {seen_gone * 1000:.0f} ms; "
          f"its {len(probed)} backends probed by a new balancer after "
          f"{min(taken) * 1000:.0f}-{max(taken) * 1000:.0f} ms "
          f"(lease_ttl {TTL} s + one 100 ms interval = {TTL * 1000 + 100} ms)")
    del fleet.procs["lb5"]


def propagation(fleet: Fleet, rounds: int) -> None:
    topo, delays = fleet.topo, []
    sockets = [str(topo.tmp / f"{lb}.sock") for lb in fleet.procs if lb != "lb1"]
    for port in range(9000, 9000 + rounds):
        name = f"{topo.hosts['b1']}:{port}"
        started = time.monotonic()
        call(str(topo.tmp / "lb1.sock"), "backend.add", {"name": name})
        pending = set(sockets)
        while pending:
            pending = {s for s in pending
                       if name not in {row["name"] for row in call(s, "backends")}}
        delays.append(time.monotonic() - started)
    delays.sort()
    print(f"lbctl backend add on lb1 applied on all other balancers: median "
          f"{delays[len(delays) // 2] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms "
          f"({rounds} adds, reply included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per probe-count window")
    args = parser.parse_args()
    made: list[Topology] = []
    try:
        fleet = Fleet(lambda hosts: made.append(Topology(hosts)) or made[-1], count=5,
                      backends=20)
        fleet.joined(fleet.lbs)
        probe_load(fleet, args.seconds)
        restart(fleet, 5, True)
        time.sleep(1.0)
        etcd_cost(fleet, 10.0)
        detection(fleet, ["b18", "b19", "b20"])
        takeover(fleet)
        propagation(fleet, 10)
    finally:
        for topo in made:
            topo.close()


if __name__ == "__main__":
    main()
