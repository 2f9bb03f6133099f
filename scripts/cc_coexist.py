"""scripts/bench-cc-coexist: does an algorithm keep its share beside other
traffic, and its low delay alone?

Per cell (bottleneck rate x base RTT x buffer in BDPs): client -> l7lb ->
backend in namespaces, tbf at the rate with a byte limit of the buffer on the
way to the backend, the base RTT added by the delay line
(dataplane/testing/delay_line.py; this host has no netem). The balancer
uploads to the backend throughout with the algorithm under test; after
--alone seconds the cross traffic (N flows of cubic or bbr from another host
straight to the backend) joins for --together seconds, then leaves
(netns-tests/coexist.py measures). Writes every run to --json; prints a
table of them. ``--netem`` delays and limits with netem instead, in the lab
VM (``scripts/test-vm --run 'scripts/bench-cc-coexist --netem --rates 10'``).

``ALGORITHM`` may carry tunables: ``lb_delay:compete=0`` is lb_delay without
its mode switch (what it was before).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-tests"))

from coexist import measure  # noqa: E402
from conftest import balancer_config, lbctl  # noqa: E402
from topology import Topology  # noqa: E402


def words(text: str) -> list[str]:
    return [w for w in text.split(",") if w]


def buffer_bytes(mbit: float, rtt_ms: float, bdp: float) -> int:
    """The buffer in bytes, never below two full frames (tbf needs one)."""
    return max(int(bdp * mbit * 1e6 / 8 * rtt_ms / 1000), 3028)


def set_algorithm(topo: Topology, backend: str, spec: str) -> None:
    name, _, tunes = spec.partition(":")
    defaults = {"compete": "1"} if name == "lb_delay" else {}
    for key, value in {**defaults, **dict(t.split("=") for t in tunes.split("+") if t)}.items():
        lbctl(topo, "cc", "set", name, key, value).check_returncode()
    lbctl(topo, "backend", "set", backend, "cc", name).check_returncode()
    time.sleep(0.3)                      # applied; idle connections closed


def run_delay(rtt_ms: float, args: argparse.Namespace, out: list[dict]) -> None:
    topo = Topology(["client", "lb", "b1", "x"])
    try:
        topo.python_backend("b1", "b1")
        lb = topo.balancer("lb", balancer_config(topo, ["b1"], extra="log: {access: false}\n"))
        topo.wait_for_log(lb, '"event":"worker listening"')
        if not args.netem:
            topo.delay("b1", rtt_ms)
        backend = f"{topo.hosts['b1']}:8000"
        for mbit, bdp in itertools.product(args.rates, args.buffers):
            room = buffer_bytes(mbit, rtt_ms, bdp)
            if args.netem:           # netem's delay and rate, its limit in packets
                topo.netem("b1", f"delay {rtt_ms:g}ms rate {mbit:g}mbit limit {room // 1514 + 1}")
            else:
                topo.shape("b1", f"{mbit:g}mbit", limit=room)
            for spec, cross in itertools.product(words(args.algorithms), words(args.cross)):
                set_algorithm(topo, backend, spec)
                algorithm, _, flows = cross.partition(":")
                run = measure(topo, "b1", "x", algorithm, int(flows or 1),
                              args.alone, args.together, args.after)
                row = {"rate_mbit": mbit, "rtt_ms": rtt_ms, "buffer_bdp": bdp,
                       "algorithm": spec, "cross": cross, **run.summary()}
                if args.timeline:
                    row["alone"], row["together"] = args.alone, args.together
                    row["timeline"] = [[round(p.t, 2), p.ours_acked, p.ours_srtt_ms, p.cross_acked]
                                       for p in run.points]
                out.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "timeline"}), flush=True)
                if args.json:
                    args.json.write_text(json.dumps({"runs": out}, indent=1))
    finally:
        topo.close()


def table(rows: list[dict]) -> str:
    lines = ["| rate Mbit/s | base RTT ms | buffer BDP | algorithm | cross | share | "
             "RTT p50/p99 ms together | retransmits | to share s | alone Mbit/s | "
             "alone RTT p50/p99 ms | back to low delay s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['rate_mbit']:g} | {r['rtt_ms']:g} | {r['buffer_bdp']:g} | {r['algorithm']} | "
            f"{r['cross']} | {r['share']:.2f} | {r['together_rtt_p50_ms']}/"
            f"{r['together_rtt_p99_ms']} | {r['retransmits']} | {r['to_share_s']} | "
            f"{r['alone_mbit_s']} | {r['alone_rtt_p50_ms']}/{r['alone_rtt_p99_ms']} | "
            f"{r['to_low_delay_s']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 50, 200], metavar="MBIT")
    parser.add_argument("--rtts", type=float, nargs="+", default=[1, 20, 80], metavar="MS")
    parser.add_argument("--buffers", type=float, nargs="+", default=[0.5, 1, 4], metavar="BDP")
    parser.add_argument("--algorithms", default="lb_delay",
                        help="comma-separated, each ALGORITHM[:key=value+key=value...]")
    parser.add_argument("--cross", default="cubic:1", help="comma-separated ALGORITHM:FLOWS")
    parser.add_argument("--alone", type=float, default=3.0)
    parser.add_argument("--together", type=float, default=8.0)
    parser.add_argument("--after", type=float, default=4.0)
    parser.add_argument("--timeline", action="store_true", help="keep every sample in --json")
    parser.add_argument("--netem", action="store_true",
                        help="netem for delay and rate (kernels that have it: the lab VM)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows: list[dict] = []
    for rtt_ms in args.rtts:
        run_delay(rtt_ms, args, rows)
    print(table(rows))


if __name__ == "__main__":
    main()
