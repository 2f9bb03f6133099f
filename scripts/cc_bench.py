"""scripts/bench-cc: each congestion-control algorithm behind the same bottleneck.

Topology (namespaces, 198.18.0.0/24): client -> l7lb -> backend, with tbf on
the way to the backend (default 50mbit, 100ms of queue). Per algorithm, set at
runtime with `lbctl backend set ... cc NAME`:

- one upload of --size bytes through the balancer: throughput, the upstream
  connection's RTT (ss, every 20 ms) p50/p99 during the transfer, and the
  segments it retransmitted;
- four uploads at once for --seconds: Jain's fairness index of their
  throughputs, from bytes acknowledged on each upstream connection (ss).

``--netem "delay 20ms 2ms loss 0.1% rate 50mbit limit 1000"`` puts netem on
the bottleneck instead of tbf (kernels that have it: the lab VM, docs/vm.md:
``scripts/test-vm --run 'scripts/bench-cc --netem "..."'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-tests"))

from conftest import Client, balancer_config, lbctl, streaming_upload  # noqa: E402
from topology import Topology  # noqa: E402

ALGORITHMS = ["cubic", "bbr", "reno", "lb_aimd", "lb_delay", "pacer"]
FLOWS = 4


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def jain(rates: list[float]) -> float:
    return sum(rates) ** 2 / (len(rates) * sum(r * r for r in rates))


def upstream(topo: Topology) -> list[dict]:
    return topo.tcp_sockets("lb", "b1", 8000)


def single(topo: Topology, size: int) -> dict:
    body = b"b" * size
    result: dict = {}

    def send() -> None:
        started = time.monotonic()
        response, _ = Client(topo).request("POST", "/single", body=body, timeout=120)
        result["seconds"] = time.monotonic() - started
        result["status"] = response.status

    thread = threading.Thread(target=send)
    thread.start()
    rtts, retrans = [], 0
    while thread.is_alive():
        for s in upstream(topo):
            if "rtt" in s:
                rtts.append(float(s["rtt"].split("/")[0]))
            if "retrans" in s:
                retrans = max(retrans, int(s["retrans"].split("/")[1]))
        time.sleep(0.02)
    thread.join()
    assert result.get("status") == 200, result
    return {"mbit_s": round(size * 8 / result["seconds"] / 1e6, 1),
            "rtt_p50_ms": round(statistics.median(rtts), 2),
            "rtt_p99_ms": round(percentile(rtts, 0.99), 2), "retransmits": retrans}


def fairness(topo: Topology, seconds: float) -> dict:
    with ExitStack() as flows:
        for _ in range(FLOWS):
            flows.enter_context(streaming_upload(topo, seconds + 30))
        time.sleep(1.0)                   # past slow start
        first = {s["local"]: int(s.get("bytes_acked", 0)) for s in upstream(topo)}
        time.sleep(seconds)
        last = {s["local"]: int(s.get("bytes_acked", 0)) for s in upstream(topo)}
    deadline = time.monotonic() + 15      # what was in pipes and buffers drains first
    while upstream(topo) and time.monotonic() < deadline:
        time.sleep(0.1)
    rates = [(last[k] - first.get(k, 0)) * 8 / seconds / 1e6 for k in last]
    return {"flows": len(rates), "jain": round(jain(rates), 3),
            "flow_mbit_s": [round(r, 1) for r in sorted(rates)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", default="50mbit")
    parser.add_argument("--queue", default="100ms")
    parser.add_argument("--netem", help="netem's impairment on the bottleneck, instead of tbf")
    parser.add_argument("--size", type=int, default=20_000_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--tune", action="append", default=[], metavar="ALGORITHM.KEY=VALUE",
                        help="lbctl cc set before measuring (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    topo = Topology(["client", "lb", "b1"])
    try:
        topo.python_backend("b1", "b1")
        lb = topo.balancer("lb", balancer_config(topo, ["b1"], extra="log: {access: false}\n"))
        topo.wait_for_log(lb, '"event":"worker listening"')
        if args.netem:
            topo.netem("b1", args.netem)
        else:
            topo.shape("b1", args.rate, queue=args.queue)
        name = f"{topo.hosts['b1']}:8000"
        for tune in args.tune:
            target, _, value = tune.partition("=")
            algorithm, _, key = target.partition(".")
            lbctl(topo, "cc", "set", algorithm, key, value).check_returncode()
        rows = {}
        for algorithm in args.algorithms.split(","):
            lbctl(topo, "backend", "set", name, "cc", algorithm).check_returncode()
            time.sleep(0.3)               # applied, old connections gone
            rows[algorithm] = {**single(topo, args.size), **fairness(topo, args.seconds)}
            print(algorithm, json.dumps(rows[algorithm]), flush=True)
    finally:
        topo.close()
    bottleneck = f"netem {args.netem}" if args.netem else f"tbf {args.rate}, queue {args.queue}"
    print(f"\nbottleneck {bottleneck}; single upload {args.size} bytes; "
          f"{FLOWS} uploads for {args.seconds}s")
    print("| algorithm | Mbit/s | RTT p50 ms | RTT p99 ms | retransmits | Jain (4 flows) |")
    print("|---|---|---|---|---|---|")
    for algorithm, r in rows.items():
        print(f"| {algorithm} | {r['mbit_s']} | {r['rtt_p50_ms']} | {r['rtt_p99_ms']} | "
              f"{r['retransmits']} | {r['jain']} |")
    if args.json:
        args.json.write_text(json.dumps({"rate": args.rate, "queue": args.queue, "netem": args.netem,
                                         "size": args.size, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
