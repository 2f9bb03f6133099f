"""scripts/bench-grpc: gRPC unary calls per second through l7lb (one worker,
h2c both ways) beside HAProxy (nbthread 1, ``proto h2`` both ways), same
run, same backend, and straight to the backend.

The backend is the tests' grpcio server (netns-tests/grpc_backend.py), the
client a grpc.aio client in its own process keeping ``--concurrency`` calls
in flight on one channel for ``--seconds``. Both are Python: the figure
``direct`` shows what they reach alone, which bounds what any proxy between
them can show. With --pin, the proxy runs on CPU 1, client and backend on
CPU 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import peer_bench as pb

BACKEND_PORT = 18301
HAPROXY = """
global
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend grpc
  bind {host}:{port} proto h2
  default_backend grpc
backend grpc
  server b1 {host}:{backend} proto h2
"""
L7LB = """
balancer: {{port: {port}, bind: {host}, workers: 1, protocol: h2c,
  http2: {{cleartext: true}}}}
backends: [{{host: {host}, port: {backend}}}]
log: {{access: false, level: info, summary: 0}}
admin: {{socket: {dir}/admin.sock}}
"""
CLIENT = """
import asyncio, sys, time
import grpc

async def main(target, seconds, concurrency):
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/l7lb.test.Echo/Unary")
        await call(b"warm-up", timeout=5)
        done = failed = 0
        stop = time.monotonic() + seconds

        async def worker():
            nonlocal done, failed
            while time.monotonic() < stop:
                try:
                    await call(b"x", timeout=5)
                    done += 1
                except grpc.aio.AioRpcError:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(done / seconds, failed)

asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""


def calls_per_second(port: int, args: argparse.Namespace) -> tuple[float, int]:
    out = subprocess.run(pb.pinned([sys.executable, "-c", CLIENT, f"{pb.HOST}:{port}",
                                    str(args.seconds), str(args.concurrency)],
                                   pb.LOAD_CPU if args.pin else None),
                         capture_output=True, text=True, timeout=args.seconds + 60)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    rate, failed = out.stdout.split()
    return float(rate), int(failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=20, help="calls in flight")
    parser.add_argument("--pin", action="store_true")
    args = parser.parse_args()
    results: dict[str, tuple[float, int]] = {}
    backend = Path(__file__).resolve().parent.parent / "netns-tests" / "grpc_backend.py"
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="l7lb-grpc-")))
        procs = pb.Procs(stack, tmp, args.pin)
        procs.start([sys.executable, str(backend), "--name", "b", "--address",
                     f"{pb.HOST}:{BACKEND_PORT}"], BACKEND_PORT, name="backend", proxy=False)
        fields = dict(host=pb.HOST, backend=BACKEND_PORT, dir=tmp)
        results["direct"] = calls_per_second(BACKEND_PORT, args)
        port = pb.PORTS["haproxy"][0]
        proc = procs.start(["haproxy", "-db", "-f", pb.write(
            tmp, "haproxy.cfg", HAPROXY.format(port=port, **fields))], port, name="haproxy")
        results["haproxy"] = calls_per_second(port, args)
        procs.stop(proc)
        port = pb.PORTS["l7lb-splice"][0]
        proc = procs.start([pb.LBCTL, "run", "-c", pb.write(
            tmp, "l7lb.yaml", L7LB.format(port=port, **fields))], port, name="l7lb")
        time.sleep(0.5)
        results["l7lb"] = calls_per_second(port, args)
        procs.stop(proc)
    base = results["haproxy"][0]
    print(f"gRPC unary calls/s, {args.concurrency} in flight on one channel, "
          f"{args.seconds:g} s each{', pinned' if args.pin else ''}")
    for name, (rate, failed) in results.items():
        print(f"{name:8} {rate:10.0f} calls/s ({rate / base:.2f}x HAProxy), {failed} failed")


if __name__ == "__main__":
    main()
