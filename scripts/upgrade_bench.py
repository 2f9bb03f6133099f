"""scripts/bench-upgrade: what an upgrade, a restart and a crashed control
process cost the traffic, l7lb against HAProxy 2.6 under the same load.

In network namespaces (198.18.0.0/24, made and removed here): a client host,
the balancer host and two backends (our Python test backend). The load is
netns-tests/steady_load.py: keep-alive requests, requests on fresh
connections, 4 MiB downloads checked byte for byte and WebSocket echoes, each
outcome counted. Scenarios, each on a fresh balancer:

- l7lb upgrade: ``lbctl upgrade`` every 2 s;
- l7lb control killed: SIGKILL of the control process, ``lbctl run`` 1 s later
  (it takes the orphaned workers over);
- l7lb restart: SIGTERM, then ``lbctl run`` (what an upgrade was before);
- HAProxy reload -x: a new ``haproxy -x STATS_SOCKET -sf OLD`` every 2 s,
  the stats socket with ``expose-fd listeners`` (its seamless reload);
- HAProxy killed: SIGKILL, a new haproxy 1 s later.

Per scenario: the events, requests, failed requests (with why), refused
connections and the worst latency of a request that succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-tests"))

from steady_load import SteadyLoad  # noqa: E402
from topology import Topology, lbctl_path  # noqa: E402

L7LB = """balancer: {{port: 8080, bind: {lb}, workers: 2}}
backends:
  - {{host: {b1}, port: 8000}}
  - {{host: {b2}, port: 8000}}
admin: {{socket: {tmp}/admin.sock}}
log: {{access: false}}
"""
HAPROXY = """global
  nbthread 2
  stats socket {tmp}/haproxy.sock mode 600 level admin expose-fd listeners
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout tunnel 60s
frontend f
  bind {lb}:8080
  default_backend app
backend app
  balance roundrobin
  server b1 {b1}:8000
  server b2 {b2}:8000
"""


def site() -> Topology:
    topo = Topology(["client", "lb", "b1", "b2"])
    for name in ("b1", "b2"):
        topo.python_backend(name, name)
    return topo


def values(topo: Topology) -> dict[str, str]:
    return {"lb": topo.hosts["lb"], "b1": topo.hosts["b1"], "b2": topo.hosts["b2"],
            "tmp": str(topo.tmp)}


def lbctl(topo: Topology, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([lbctl_path(), "--socket", str(topo.tmp / "admin.sock"), *args],
                          capture_output=True, text=True, timeout=60)


def l7lb(topo: Topology) -> subprocess.Popen:
    proc = topo.balancer("lb", L7LB.format(**values(topo)))
    topo.wait_for_log(proc, '"event":"state applied"')
    return proc


def haproxy(topo: Topology, old: subprocess.Popen | None = None) -> subprocess.Popen:
    conf = topo.tmp / "haproxy.cfg"
    conf.write_text(HAPROXY.format(**values(topo)))
    argv = ["haproxy", "-db", "-f", str(conf)]
    if old is not None:
        argv += ["-x", str(topo.tmp / "haproxy.sock"), "-sf", str(old.pid)]
    proc = topo.spawn("lb", argv, log_name=f"haproxy-{len(topo.procs)}.log")
    topo.wait_port("lb", 8080, from_host="client", proc=proc)
    return proc


def run(topo: Topology, seconds: float, events: list[tuple[float, Callable[[], str]]]) -> dict:
    """The load for ``seconds``, each event at its time; what happened."""
    said = []
    with SteadyLoad(topo, seconds=seconds, session=2.0) as load:
        start = time.monotonic()
        for at, event in events:
            time.sleep(max(0.0, start + at - time.monotonic()))
            said.append(event())
        time.sleep(max(0.0, start + seconds - time.monotonic()))
    return {**load.summary(), "events": said}


def l7lb_upgrades(topo: Topology, seconds: float, count: int) -> dict:
    l7lb(topo)

    def upgrade() -> str:
        done = lbctl(topo, "upgrade")
        return done.stdout.strip() or done.stderr.strip()
    return run(topo, seconds, [(2.0 * (n + 1), upgrade) for n in range(count)])


def l7lb_killed(topo: Topology, seconds: float, _count: int) -> dict:
    proc = l7lb(topo)

    def kill() -> str:
        os.kill(proc.pid, signal.SIGKILL)
        return f"SIGKILL {proc.pid}"

    def again() -> str:
        new = topo.spawn("lb", [lbctl_path(), "run", "-c", str(topo.tmp / "balancer.yaml")],
                         log_name="balancer-again.log")
        topo.wait_for_log(new, '"event":"took over"', timeout=15)
        return f"lbctl run {new.pid}: took over"
    return run(topo, seconds, [(2.0, kill), (3.0, again)])


def l7lb_restart(topo: Topology, seconds: float, _count: int) -> dict:
    proc = l7lb(topo)

    def restart() -> str:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        new = topo.spawn("lb", [lbctl_path(), "run", "-c", str(topo.tmp / "balancer.yaml")],
                         log_name="balancer-again.log")
        topo.wait_port("lb", 8080, from_host="lb", proc=new)
        return f"restarted as {new.pid}"
    return run(topo, seconds, [(2.0, restart)])


def haproxy_reloads(topo: Topology, seconds: float, count: int) -> dict:
    current = [haproxy(topo)]

    def reload() -> str:
        current.append(haproxy(topo, current[-1]))
        return f"haproxy -x -sf {current[-2].pid} -> {current[-1].pid}"
    return run(topo, seconds, [(2.0 * (n + 1), reload) for n in range(count)])


def haproxy_killed(topo: Topology, seconds: float, _count: int) -> dict:
    current = [haproxy(topo)]

    def kill() -> str:
        current[0].kill()
        return f"SIGKILL {current[0].pid}"

    def again() -> str:
        current.append(haproxy(topo))
        return f"haproxy {current[-1].pid}"
    return run(topo, seconds, [(2.0, kill), (3.0, again)])


SCENARIOS = {"l7lb upgrade": l7lb_upgrades, "l7lb control killed": l7lb_killed,
             "l7lb restart": l7lb_restart, "HAProxy reload -x": haproxy_reloads,
             "HAProxy killed": haproxy_killed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=14.0, help="load per scenario")
    parser.add_argument("--upgrades", type=int, default=5, help="upgrades or reloads per run")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    version = subprocess.run(["haproxy", "-v"], capture_output=True,
                             text=True).stdout.split("\n")[0]
    results = {}
    for name in args.only or SCENARIOS:
        topo = site()
        try:
            results[name] = SCENARIOS[name](topo, args.seconds, args.upgrades)
        finally:
            topo.close()
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
    print(f"\n{version}; load: {args.seconds:g} s each; {args.upgrades} upgrades or reloads\n")
    print("| scenario | requests | failed | refused connections | worst latency ms | failures |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        why = "; ".join(f"{n}x {k}" for k, n in sorted(r["why"].items(), key=lambda i: -i[1])[:3])
        print(f"| {name} | {r['requests']} | {r['failures']} | {r['refused']} | "
              f"{r['worst_ms']} | {why or '-'} |")
    if args.json:
        args.json.write_text(json.dumps({"haproxy": version, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
