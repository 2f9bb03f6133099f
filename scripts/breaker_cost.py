"""What circuit breakers cost per request (a micro-benchmark, no I/O): a
worker judging one outcome and counting it in its own window, and the
control process counting a worker's batch of calls (per call)."""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataplane.breaker.machine import Breaker, BreakerRules  # noqa: E402
from dataplane.config import BreakerSettings  # noqa: E402
from dataplane.upstream.breakers import WorkerBreakers  # noqa: E402
from dataplane.upstream.host import Host  # noqa: E402
from dataplane.upstream.outcome import Outcome  # noqa: E402

BATCH = 5000          # calls in one worker report at about 25k req/s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    host = Host("198.18.0.9", 80)
    worker = WorkerBreakers("default", BreakerSettings(), [host], SimpleNamespace(slot=0),
                            lambda: None)
    outcome = Outcome("default", host.name, 200, 0.5, 0, 10)

    def one() -> None:
        worker.outcome(host, outcome)
        if len(host.marks) >= BATCH:
            worker.take_marks()
    empty = timeit.timeit(lambda: None, number=args.number)
    spent = timeit.timeit(one, number=args.number) - empty
    print(f"worker, per outcome: {spent / args.number * 1e6:.2f} µs")
    breaker, marks = Breaker(BreakerRules()), bytes(BATCH)
    rounds = max(1, args.number // BATCH)
    spent = timeit.timeit(lambda: breaker.record_many(marks), number=rounds)
    print(f"control process, per call in a batch of {BATCH}: "
          f"{spent / rounds / BATCH * 1e6:.3f} µs")


if __name__ == "__main__":
    main()
