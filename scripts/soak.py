"""scripts/soak: the balancer under steady mixed load while things break.

In network namespaces (198.18.0.0/24, made and removed here): an HTTP
balancer with three workers and a TCP-mode balancer in front of four hosts,
each running our Python backend for HTTP and for TCP. Client threads send
keep-alive and one-shot GETs (downloads checked byte for byte), POSTs up to
10 MB (the backend's SHA-256 checked), chunked uploads, WebSocket echoes and
TCP streams (digest checked), while a chaos loop, one thing at a time, kills
(-9) and restarts a backend, freezes one, drops its packets (nftables), kills
a worker, reloads, changes weights, drains, removes and re-adds a backend
with lbctl, and sends clients that abort mid-request or mid-response and
slowloris clients. Every second it samples the balancers' descriptors,
memory and connections (from clients, to backends). At the end it prints
(and with --json writes) requests, failures by cause, corrupted bodies,
descriptor growth beyond pooled connections, memory growth from the first
minute (or the first tenth of a shorter run) to the end, peak connections,
worker restarts, and the failures no disruption explains. Exit 1 when a
body was corrupted, descriptors grew, or a failure is unexplained.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-tests"))
sys.path.insert(0, str(ROOT))

from soak_chaos import Chaos, workers  # noqa: E402
from soak_load import HTTP_PORT, TCP_PORT, Results, Traffic  # noqa: E402
from topology import Topology  # noqa: E402

BACKENDS = ["b1", "b2", "b3", "b4"]
COMMON = """log: {{access: false}}
timeouts: {{header: 2s, request: 3s, backend_idle: 3s, client_body: 3s, connect: 1s}}
"""


def config(topo: Topology, mode: str, port: int, backend_port: int, workers: int,
           admin: str) -> str:
    backends = "\n".join(f"  - {{host: {topo.hosts[b]}, port: {backend_port}}}" for b in BACKENDS)
    return (f"balancer: {{port: {port}, bind: {topo.hosts['lb']}, mode: {mode}, "
            f"workers: {workers}, health_check_interval: 500ms}}\n"
            f"backends:\n{backends}\nadmin: {{socket: {topo.tmp / admin}}}\n"
            + COMMON.format())


class Site:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.backends = {host: self.start_backend(host) for host in BACKENDS}
        self.http = topo.balancer("lb", config(topo, "http", HTTP_PORT, 8000, 3, "admin.sock"),
                                  port=HTTP_PORT, name="http")
        self.tcp = topo.balancer("lb", config(topo, "tcp", TCP_PORT, 9000, 1, "admin-tcp.sock"),
                                 port=TCP_PORT, name="tcp")

    def start_backend(self, host: str) -> list:
        return [self.topo.python_backend(host, host), self.topo.python_backend(
            host, host, port=9000, tcp=True)]

    def pids(self) -> list[int]:
        controls = [self.http.pid, self.tcp.pid]
        return controls + [w for pid in controls for w in workers(pid)]

    def descriptors(self) -> int:
        """Open descriptors of the balancers' processes, less /dev/null ones: a
        new worker puts /dev/null over each socket of the control process it
        inherits (supervisor.py), so a worker restarted while a probe was open
        has one more, which holds nothing."""
        return sum(_held(pid) for pid in self.pids())

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                total += next(int(line.split()[1]) for line in open(f"/proc/{pid}/status")
                              if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                pass
        return total

    def connections(self) -> tuple[int, int]:
        """The balancers' established connections now: from clients, to backends."""
        out = self.topo.run("lb", ["ss", "-tnH", "state", "established"], text=True).stdout
        peers = [line.split()[-1] for line in out.splitlines()]
        upstream = sum(peer.endswith((":8000", ":9000")) for peer in peers)
        return len(peers) - upstream, upstream

    def pooled(self) -> int:
        """Connections the balancers hold to backends now (idle in their pools)."""
        return self.connections()[1]

    def at_rest(self) -> int:
        """Descriptors beyond the pooled connections, once nothing is in flight:
        the smallest of several looks (a health probe may hold one briefly)."""
        time.sleep(2.5)
        looks = []
        for _ in range(5):
            looks.append(self.descriptors() - self.pooled())
            time.sleep(0.2)
        return min(looks)

    def restarts(self) -> int:
        started = self.topo.log(self.http).count('"event":"worker started"')
        return started - 3


def _held(pid: int) -> int:
    count = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0                 # gone (a worker killed by the chaos loop)
    for name in names:
        try:
            count += os.readlink(f"/proc/{pid}/fd/{name}") != os.devnull
        except OSError:
            pass                 # closed meanwhile
    return count


def sample(site: Site, stop: threading.Event, samples: list) -> None:
    start = time.monotonic()
    while not stop.wait(1.0):
        samples.append((time.monotonic() - start, site.descriptors(), site.rss_kib(),
                        *site.connections()))


def summarise(results: Results, chaos: Chaos, base: int, end: int, samples: list,
              started: float, restarts: int) -> dict:
    seconds = time.monotonic() - started
    records = results.records
    corrupt = [r for r in records if r.outcome.startswith("corrupt")]
    failed = [r for r in records if r.outcome != "ok" and not r.outcome.startswith("corrupt")]
    unexplained = [r for r in failed if chaos.explains(r.started, r.ended) is None]
    explained_by = Counter(chaos.explains(r.started, r.ended).kind for r in failed
                           if r not in unexplained)
    mark = min(60.0, seconds / 10)
    early = next((s[2] for s in samples if s[0] >= mark), samples[0][2] if samples else 0)
    return {
        "seconds": round(seconds), "requests": len(records),
        "by_kind": {k: v for k, v in Counter(r.kind for r in records).items()},
        "failed": len(failed),
        "failed_by_cause": dict(Counter(f"{r.kind}: {r.outcome}" for r in failed)),
        "failed_idempotent": sum(r.idempotent for r in failed),
        "explained_by": dict(explained_by), "corrupted": len(corrupt),
        "corrupted_detail": [r.outcome for r in corrupt][:10],
        "unexplained": len(unexplained),
        "unexplained_detail": [(r.kind, r.outcome, round(r.started - started, 2),
                                round(r.ended - started, 2), chaos.near(r.started, started))
                               for r in unexplained][:20],
        "descriptors_at_rest": [base, end], "descriptor_growth": end - base,
        "rss_kib": [early, samples[-1][2] if samples else 0],
        "rss_growth_kib": (samples[-1][2] - early) if samples else 0,
        "connections_peak": [max((s[3] for s in samples), default=0),
                             max((s[4] for s in samples), default=0)],   # clients, backends
        "descriptors_peak": max((s[1] for s in samples), default=0),
        "worker_restarts": restarts,
        "chaos": dict(Counter(e.kind for e in chaos.events)),
    }


def run(seconds: float, seed: int) -> dict:
    topo = Topology(["client", "lb", *BACKENDS])
    try:
        site = Site(topo)
        results = Results()
        warm = Traffic(topo, Results())
        warm.start()
        time.sleep(3)
        warm.join()
        base = site.at_rest()
        traffic = Traffic(topo, results)
        chaos = Chaos(topo, site.backends, site.http, site.start_backend, seed)
        stop, samples = threading.Event(), []
        sampler = threading.Thread(target=sample, args=(site, stop, samples), daemon=True)
        started = time.monotonic()
        for part in (traffic, chaos, sampler):
            part.start()
        time.sleep(seconds)
        chaos.join()
        time.sleep(2)              # the last disruption's requests end
        traffic.join()
        stop.set()
        end = site.at_rest()
        return summarise(results, chaos, base, end, samples, started, site.restarts())
    finally:
        topo.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, help="instead of --minutes")
    parser.add_argument("--json", metavar="FILE", help="also write the summary here")
    parser.add_argument("--seed", type=int, default=11, help="of the chaos loop's choices")
    args = parser.parse_args()
    summary = run(args.seconds or args.minutes * 60, args.seed)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    good = (summary["corrupted"] == 0 and summary["descriptor_growth"] <= 0
            and summary["unexplained"] == 0)
    print("soak: " + ("passed" if good else "FAILED"), file=sys.stderr)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
