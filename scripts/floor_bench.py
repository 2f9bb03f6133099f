"""scripts/bench-floor: how fast a Python proxy on uvloop can go at all, as a
floor under l7lb's HTTP figures, beside HAProxy in the same (pinned) run.

Three minimal keep-alive proxies, each a few lines on uvloop protocols, one
upstream connection per client connection, nothing else of l7lb's (no pool,
no balancing, routing, health, breakers, timeouts, logs):

  pass      the request head found with bytes.find, X-Forwarded-For added,
            responses passed through unparsed (what the speed issue measured);
  response  and each response read by httptools (its end must be known to
            reuse a connection or to answer anything itself);
  both      and each request read by httptools too (framing, smuggling rules).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httptools
import uvloop

import peer_bench as pb

PORT = 18086


class Upstream(asyncio.Protocol):
    def __init__(self, client: "Client", parse: bool) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self) if parse else None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.parser is not None:
            self.parser.feed_data(data)
        self.client.transport.write(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        pass

    def on_message_complete(self) -> None:
        pass


class Client(asyncio.Protocol):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.parser = httptools.HttpRequestParser(self) if mode == "both" else None
        self.head: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")[0].encode()
        self.upstream = None
        self.waiting: list[bytes] = []
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, self.upstream = await loop.create_connection(
            lambda: Upstream(self, self.mode != "pass"), pb.HOST, pb.BACKEND_HTTP)
        for data in self.waiting:
            self.upstream.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.parser is not None:
            self.parser.feed_data(data)
            return
        end = data.find(b"\r\n\r\n")
        self._send(data[:end + 2] + b"X-Forwarded-For: " + self.peer + b"\r\n\r\n")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        p = self.parser
        self.head[:0] = (p.get_method(), b" / HTTP/1.1\r\n")
        self.head += (b"X-Forwarded-For: ", self.peer, b"\r\n\r\n")
        self._send(b"".join(self.head))
        self.head = []

    def _send(self, data: bytes) -> None:
        if self.upstream is None:
            self.waiting.append(data)
        else:
            self.upstream.transport.write(data)


def serve(mode: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Client(mode), pb.HOST, PORT)
        await server.serve_forever()
    uvloop.run(main())


def tree(pid: int) -> list[int]:
    """A process and its children (l7lb's control process and worker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *map(int, out.split())]


def loaded(proc: subprocess.Popen, port: int, seconds: int) -> dict:
    """wrk against one proxy, with the proxy's CPU time per request split
    into user (its own code) and system (the kernel's work for it)."""
    pids = tree(proc.pid)
    before = [pb.cpu_seconds(pid) for pid in pids]
    result = pb.wrk(port, seconds, 50, pb.LOAD_CPU)
    after = [pb.cpu_seconds(pid) for pid in pids]
    count = result["req_s"] * seconds
    for i, part in enumerate(("user_us", "sys_us")):
        result[part] = sum(a[i] - b[i] for a, b in zip(after, before)) * 1e6 / count
    return result


def measure(procs: pb.Procs, args, mode: str) -> dict:
    proc = procs.start(pb.pinned([sys.executable, __file__, "--serve", mode], pb.PROXY_CPU),
                       PORT, name=f"floor-{mode}")
    result = loaded(proc, PORT, args.seconds)
    procs.stop(proc)
    return result


def measure_peer(procs: pb.Procs, args, name: str) -> dict:
    proc = pb.start_proxy(procs, name, 1)[0]
    time.sleep(1)        # l7lb's worker forks after its listener answers
    result = loaded(proc, pb.PORTS[name][0], args.seconds)
    procs.stop(proc)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    results = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="l7lb-floor-")))
        procs = pb.Procs(stack, tmp, True)
        pb.nginx_backend(procs)
        results["haproxy"] = measure_peer(procs, args, "haproxy")
        for mode in ("pass", "response", "both"):
            results[mode] = measure(procs, args, mode)
        results["l7lb"] = measure_peer(procs, args, "l7lb-splice")
    base = results["haproxy"]["req_s"]
    print("pinned: proxy on CPU 1; wrk and nginx on CPU 0; CPU: the proxy's, per request")
    for name, row in results.items():
        print(f"{name:10} {row['req_s']:9.0f} req/s ({row['req_s'] / base:.2f}x)"
              f"  p99 {row['p99_ms']:5.2f} ms  user {row['user_us']:5.1f} µs"
              f"  system {row['sys_us']:5.1f} µs")


if __name__ == "__main__":
    main()
