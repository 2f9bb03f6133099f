"""scripts/profile-http: where a small keep-alive HTTP request's time goes in
l7lb (one worker pinned to CPU 1; wrk and an nginx backend on CPU 0).

First run, unprofiled: req/s and CPU time per request of the worker (user and
system) and of the control process, from /proc. Second run, under cProfile
(L7LB_PROFILE): Python calls per request and the functions with the most self
time per request. cProfile slows every call several times over, so read its
times as shares, not as costs.
"""

from __future__ import annotations

import argparse
import glob
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import peer_bench as pb

PORT = pb.PORTS["l7lb-splice"][0]


def start(procs: pb.Procs, tmp: Path, routes: int) -> tuple[subprocess.Popen, int]:
    conf = pb.write(tmp, "l7lb.yaml", pb.L7LB.format(
        host=pb.HOST, port=PORT, backend=pb.BACKEND_HTTP, workers=1, dir=tmp, mode="http",
        relay="auto", max_idle=100, access="false", routes=pb.routes(routes), l7lb_h2=""))
    proc = procs.start([pb.LBCTL, "run", "-c", conf], PORT, name="l7lb")
    time.sleep(1)
    worker = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                text=True).stdout.split()[-1])
    return proc, worker


def unprofiled(procs: pb.Procs, tmp: Path, args) -> None:
    proc, worker = start(procs, tmp, args.routes)
    before = {pid: pb.cpu_seconds(pid) for pid in (worker, proc.pid)}
    result = pb.wrk(PORT, args.seconds, 50, pb.LOAD_CPU)
    after = {pid: pb.cpu_seconds(pid) for pid in (worker, proc.pid)}
    procs.stop(proc)
    count = result["req_s"] * args.seconds
    us = {pid: [(a - b) * 1e6 / count for a, b in zip(after[pid], before[pid])]
          for pid in after}
    print(f"unprofiled: {result['req_s']:.0f} req/s, p99 {result['p99_ms']} ms")
    print(f"  worker  user {us[worker][0]:5.1f} µs/request, system {us[worker][1]:5.1f}")
    print(f"  control user {us[proc.pid][0]:5.1f} µs/request, system {us[proc.pid][1]:5.1f}")


def profiled(procs: pb.Procs, tmp: Path, args) -> None:
    os.environ["L7LB_PROFILE"] = str(tmp)
    try:
        proc, _ = start(procs, tmp, args.routes)
    finally:
        del os.environ["L7LB_PROFILE"]
    result = pb.wrk(PORT, args.seconds, 50, pb.LOAD_CPU)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    stats = pstats.Stats(glob.glob(str(tmp / "worker-*.prof"))[0])
    count = result["req_s"] * args.seconds
    calls = sum(row[1] for row in stats.stats.values())
    print(f"profiled: {result['req_s']:.0f} req/s; {calls / count:.0f} calls per request "
          f"(builtins included); top {args.top} by self time (µs/request under cProfile):")
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:args.top]
    for (path, line, name), (_, ncalls, self_time, _, _) in rows:
        where = f"{Path(path).parent.name}/{Path(path).name}:{line}" if line else "builtin"
        print(f"  {self_time * 1e6 / count:6.2f}  {ncalls / count:5.2f}x  {name}  ({where})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--routes", type=int, default=0)
    args = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="l7lb-profile-")))
        procs = pb.Procs(stack, tmp, True)
        pb.nginx_backend(procs)
        unprofiled(procs, tmp, args)
        profiled(procs, tmp, args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
