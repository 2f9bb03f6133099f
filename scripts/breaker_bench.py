"""scripts/bench-breakers: what a burst of 5xx from one backend costs, and
how fast the balancer refuses what is over a limit.

In network namespaces (198.18.0.0/24, made and removed here): a client host,
the balancer (2 workers, default breaker settings, probes on /_health so that
health stays out of it) and three of our test backends.

- burst: under load (clients on fresh connections), one backend answers 500
  to everything for ``--burst`` seconds, then recovers. Reported: requests
  that reached it during the burst, and after its breaker first opened
  (trials only, if the breaker works), requests that failed at the client,
  time from the burst's start to the breaker open, and from the recovery to
  the breaker closed; the breaker's transitions.
- overload: ``breaker.max_requests: 5`` and 40 concurrent requests to a
  backend that answers in 1.5 s: the balancer's own time for each 503
  (access log, from request head to answer): p50, p99, max.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-tests"))

from conftest import ask_backend, balancer_config, lbctl  # noqa: E402
from load import Load  # noqa: E402
from topology import Topology  # noqa: E402

BACKENDS = ("b1", "b2", "b3")
HEALTH = "health: {path: /_health, interval: 1s}\n"


def quietly_close(topo: Topology) -> None:
    """Tear down; the processes' logs go to stderr, away from the report."""
    with contextlib.redirect_stdout(sys.stderr):
        topo.close()


def access(lb) -> list[dict]:
    return [json.loads(line) for line in open(lb.log_path, errors="replace")
            if '"event":"request"' in line]


def started_at(line: dict) -> float:
    """When the request's head came in (wall clock)."""
    ended = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
    return ended - line["ms"] / 1000


def burst(seconds: float, load_seconds: float) -> dict:
    topo = Topology(["client", "lb", *BACKENDS])
    try:
        for name in BACKENDS:
            topo.python_backend(name, name)
        lb = topo.balancer("lb", balancer_config(topo, list(BACKENDS), extra=HEALTH)
                           .replace("workers: 1", "workers: 2"))
        b2 = f"{topo.hosts['b2']}:8000"
        with Load(topo, clients=8, seconds=load_seconds) as load:
            time.sleep(2.0)
            fault_at = time.time()
            ask_backend(topo, "b2", "/_fault/status-500")
            time.sleep(seconds)
            recovered_at = time.time()
            ask_backend(topo, "b2", "/_fault/ok")
            time.sleep(max(0.0, load_seconds - seconds - 2.5))
        row = json.loads(lbctl(topo, "breaker", b2, "--json").stdout)[0]
        moves = row["transitions"]
        opened = next((t["at"] for t in moves if t["to"] == "open"), None)
        closed = next((t["at"] for t in moves if t["to"] == "closed" and t["at"] > recovered_at),
                      None)
        lines = [line for line in access(lb) if line["backend"] == b2]
        during = [line for line in lines if fault_at <= started_at(line) < recovered_at]
        after_open = [line for line in during if opened and started_at(line) > opened]
        trials = sum(1 for t in moves if t["to"] == "half_open" and t["at"] < recovered_at)
        return {
            "burst_s": seconds, "requests_sent": len(load.results),
            "failed_at_client": sum(1 for s in load.statuses if s != 200),
            "reached_failing_backend_in_burst": len(during),
            "reached_it_after_open": len(after_open), "half_open_trials_in_burst": trials,
            "time_to_open_s": round(opened - fault_at, 3) if opened else None,
            "time_to_close_after_recovery_s": round(closed - recovered_at, 3) if closed else None,
            "transitions": [f"{t['from']} -> {t['to']} at +{t['at'] - fault_at:.3f}s: "
                            f"{t['reason']}" for t in moves]}
    finally:
        quietly_close(topo)


def overload(clients: int) -> dict:
    topo = Topology(["client", "lb", "b1"])
    try:
        topo.python_backend("b1", "b1")
        lb = topo.balancer("lb", balancer_config(
            topo, ["b1"], extra=HEALTH + "breaker: {max_requests: 5}\n")
            .replace("workers: 1", "workers: 2"))
        ask_backend(topo, "b1", "/_fault/slow-1500")
        socks = [topo.connect("client", "lb", 8080, timeout=10) for _ in range(clients)]
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        for sock in socks:
            while sock.recv(65536):
                pass
            sock.close()
        ms = sorted(line["ms"] for line in access(lb) if line["status"] == 503)
        seen = json.loads(ask_backend(topo, "b1", "/_stats"))
        return {"clients": clients, "refused_503": len(ms),
                "backend_max_concurrent": seen["max_concurrent"],
                "p50_ms": statistics.median(ms) if ms else None,
                "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else None,
                "max_ms": ms[-1] if ms else None}
    finally:
        quietly_close(topo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=float, default=10.0, help="seconds of 5xx")
    parser.add_argument("--load", type=float, default=25.0, help="seconds of load in all")
    parser.add_argument("--clients", type=int, default=40, help="concurrent, for overload")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    results = {"burst": burst(args.burst, args.load), "overload": overload(args.clients)}
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
