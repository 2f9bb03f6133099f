"""scripts/plot-cc-coexist: the switch timeline of scripts/bench-cc-coexist
runs kept with --timeline, as a PNG: per run, the throughput of the
balancer's upload and of the cross traffic (over 0.5 s), and the upload's
smoothed RTT, with the time both ran shaded. ``--table`` prints the runs of
any number of JSON files as docs/congestion.md's table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cc_coexist import table  # noqa: E402

STEP = 5          # samples (of 0.1 s) per throughput point


def rates(timeline: list[list[float]], column: int) -> tuple[list[float], list[float]]:
    """Mbit/s over each STEP samples."""
    times, mbit = [], []
    for a, b in zip(timeline[::STEP], timeline[STEP::STEP]):
        times.append(b[0])
        mbit.append((b[column] - a[column]) * 8 / (b[0] - a[0]) / 1e6)
    return times, mbit


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
        print(table(runs))
        return
    plot([run for run in runs if "timeline" in run], args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
