"""scripts/bench-rounds: HTTP req/s of l7lb against HAProxy in short rounds,
taken in turn, for a machine whose speed wanders.

On a shared VM the CPU each proxy gets can change by half within minutes,
so one long run of each (scripts/bench) compares two different machines.
Here both proxies (and the nginx backend) run at once, and each round runs
wrk against each proxy in turn, in an order drawn at random, for
``--seconds``, after a second of warm-up each: each round's ratio compares
neighbours in time. It prints every round and the median of the rounds'
ratios (req/s, p99). Same options as scripts/bench for the request, the pinning, the routes and
the access logs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import peer_bench as pb

TARGETS = ("haproxy", "l7lb-splice")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=3, help="wrk duration per target and round")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--pin", action="store_true",
                        help=f"proxies on CPU {pb.PROXY_CPU}; wrk and nginx on CPU {pb.LOAD_CPU}")
    parser.add_argument("--request", choices=("small", "browser"), default="small")
    parser.add_argument("--routes", type=int, default=0,
                        help="l7lb gets this many routes that no request matches")
    parser.add_argument("--access-log", action="store_true", help="every proxy logs each request")
    args = parser.parse_args()
    cpu = pb.LOAD_CPU if args.pin else None
    ratios, p99s = [], []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="l7lb-rounds-")))
        procs = pb.Procs(stack, tmp, args.pin)
        pb.nginx_backend(procs)
        scripts = {}
        for name in TARGETS:
            pb.start_proxy(procs, name, 1, args.routes, args.access_log)
            port = pb.PORTS[name][0]
            scripts[name] = pb.browser_script(tmp, port) if args.request == "browser" else None
            pb.wrk(port, 1, args.connections, cpu, script=scripts[name])    # warm-up, not counted
        for number in range(1, args.rounds + 1):
            order = random.sample(TARGETS, len(TARGETS))
            got = {}
            for name in order:
                got[name] = pb.wrk(pb.PORTS[name][0], args.seconds, args.connections, cpu,
                                   script=scripts[name])
            haproxy, l7lb = got["haproxy"], got["l7lb-splice"]
            ratios.append(l7lb["req_s"] / haproxy["req_s"])
            p99s.append(l7lb["p99_ms"] / haproxy["p99_ms"])
            print(f"round {number} ({order[0]} first): HAProxy {haproxy['req_s']:,.0f} req/s, "
                  f"l7lb {l7lb['req_s']:,.0f} ({ratios[-1]:.2f}x), "
                  f"p99 {l7lb['p99_ms']:.2f} / {haproxy['p99_ms']:.2f} ms ({p99s[-1]:.2f}x)")
    print(f"median of {args.rounds} rounds: {statistics.median(ratios):.2f}x HAProxy's req/s "
          f"(rounds {min(ratios):.2f}x-{max(ratios):.2f}x), p99 {statistics.median(p99s):.2f}x; "
          f"pinned: {'yes' if args.pin else 'no'}, request: {args.request}, "
          f"access logs: {'on' if args.access_log else 'off'}, routes: {args.routes}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
