"""scripts/plot-cc-coexist: the switch timeline of scripts/bench-cc-coexist
runs kept with --timeline, as a PNG: per run, the throughput of the
balancer's upload and of the cross traffic (over 0.5 s), and the upload's
smoothed RTT, with the time both ran shaded. ``--table`` prints the runs of
any number of JSON files as docs/congestion.md's table: a row per cell,
lb_delay's figures against one cubic flow, then its share against each
other cross traffic and the share other algorithms got against cubic."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

STEP = 5          # samples (of 0.1 s) per throughput point


def rates(timeline: list[list[float]], column: int) -> tuple[list[float], list[float]]:
    """Mbit/s over each STEP samples."""
    times, mbit = [], []
    for a, b in zip(timeline[::STEP], timeline[STEP::STEP]):
        times.append(b[0])
        mbit.append((b[column] - a[column]) * 8 / (b[0] - a[0]) / 1e6)
    return times, mbit


def cell_table(runs: list[dict]) -> str:
    cells: dict[tuple, dict[tuple, dict]] = {}
    for r in runs:
        cells.setdefault((r["rate_mbit"], r["rtt_ms"], r["buffer_bdp"]), {})[
            (r["algorithm"], r["cross"])] = r
    others = sorted({k for c in cells.values() for k in c} - {("lb_delay", "cubic:1")})
    head = ["rate Mbit/s", "base RTT ms", "buffer BDP", "alone Mbit/s", "alone RTT p50/p99 ms",
            "share vs cubic", "to share s", "RTT p50/p99 ms beside cubic", "retransmits",
            "back to low delay s"] + [f"{a} vs {c}" for a, c in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (rate, rtt, bdp), c in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        r = c.get(("lb_delay", "cubic:1"))
        ours = ["-"] * 7 if r is None else [
            r["alone_mbit_s"], f"{r['alone_rtt_p50_ms']}/{r['alone_rtt_p99_ms']}",
            f"**{r['share']:.2f}**", r["to_share_s"] if r["to_share_s"] is not None else "-",
            f"{r['together_rtt_p50_ms']}/{r['together_rtt_p99_ms']}", r["retransmits"],
            r["to_low_delay_s"] if r["to_low_delay_s"] is not None else "-"]
        rest = [f"{c[k]['share']:.2f}" if k in c else "-" for k in others]
        lines.append("| " + " | ".join(str(v) for v in [f"{rate:g}", f"{rtt:g}", f"{bdp:g}",
                                                         *ours, *rest]) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], out: Path) -> None:
    fig, axes = plt.subplots(2, len(runs), figsize=(6 * len(runs), 6), sharex=True,
                             squeeze=False)
    for i, run in enumerate(runs):
        timeline = run["timeline"]
        join, leave = run["alone"], run["alone"] + run["together"]
        top, bottom = axes[0][i], axes[1][i]
        for column, label in ((1, f"l7lb's upload ({run['algorithm']})"),
                              (3, f"cross traffic ({run['cross']})")):
            top.plot(*rates(timeline, column), label=label)
        bottom.plot([p[0] for p in timeline], [p[2] for p in timeline], color="tab:red")
        for ax in (top, bottom):
            ax.axvspan(join, leave, color="0.9", zorder=0)
            ax.grid(alpha=0.3)
        top.set_title(f"{run['algorithm']}: share {run['share']:.2f} beside {run['cross']}")
        top.set_ylabel("Mbit/s")
        top.legend(loc="lower left", fontsize=8)
        bottom.set_ylabel("upload's srtt, ms")
        bottom.set_xlabel(f"seconds ({run['rate_mbit']:g} Mbit/s, base RTT {run['rtt_ms']:g} ms, "
                          f"buffer {run['buffer_bdp']:g} BDP; shaded: both run)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="scripts/bench-cc-coexist --json files")
    parser.add_argument("--out", type=Path, default=Path("docs/images/cc-coexist-timeline.png"))
    parser.add_argument("--table", action="store_true", help="print the table instead")
    args = parser.parse_args()
    runs = [run for path in args.runs for run in json.loads(path.read_text())["runs"]]
    if args.table:
        print(cell_table(runs))
        return
    plot([run for run in runs if "timeline" in run], args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
