"""scripts/request-cost: the Python cost of one proxied HTTP request, in one
process, without the kernel or the event loop in the way.

A real Worker (its clusters, pool, routes, breakers, health, limits) takes
client connections whose transports are stand-ins that record what is
written; the upstream connections are pooled ones on stand-in transports
too. Each request is fed to the client side as one read, the backend's
response to the upstream side as one read, and what the client receives is
checked against an expected answer, so a figure never comes from a path
that failed. It reports µs per request (best of several rounds) and, under
cProfile, Python calls per request (builtins included) with the top
functions. Requests: wrk's (a Host header), a browser's (about 550 bytes,
10 headers), and either with routes. With ``--vary`` no head repeats (each
request a new query string, each answer a new ETag): the lane then judges
every head afresh instead of recalling its verdict.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dataplane import logs
from dataplane.testing.inprocess import Client, InProcess

WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BROWSER = (
    b"GET /assets/app.js?v=12 HTTP/1.1\r\nHost: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/120.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Referer: https://www.example.com/index.html\r\n"
    b"Cookie: session=4f2a9c1e8b7d6a5f3e2d1c0b; theme=dark; lang=en\r\n"
    b"Sec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n"
    b"Connection: keep-alive\r\n\r\n")
NGINX_HEAD = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT\r\n"
              b"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n")
SMALL = NGINX_HEAD % 17 + b"hello from nginx\n"
LARGE = NGINX_HEAD % 2048 + b"x" * 2048


def routes(count: int) -> str:
    """Routes no request matches (as scripts/bench --routes makes them)."""
    if not count:
        return ""
    lines = [f"  - {{match: {{host: site{i}.example.com}}}}" if i % 2 else
             f"  - {{match: {{path: {{prefix: /service{i}/}}}}}}" for i in range(count)]
    return "routes:\n" + "\n".join(lines) + "\n"


def varied(request: bytes, response: bytes, numbers: range) -> tuple[list[bytes], list[bytes]]:
    """Requests and answers like these, one of each per number, no two heads alike."""
    at = request.index(b" HTTP/1.1")
    mark = b"&" if b"?" in request[:at] else b"?"
    requests = [request[:at] + mark + b"n=%d" % n + request[at:] for n in numbers]
    responses = [response.replace(b"\r\n\r\n", b'\r\nETag: "%d"\r\n\r\n' % n, 1)
                 for n in numbers]
    return requests, responses


class Bench:
    """One worker, one client connection, an upstream connection in its pool."""

    def __init__(self, request: bytes, response: bytes, access: bool, route_count: int,
                 vary: bool = False, extra: str = "") -> None:
        self.log = tempfile.TemporaryFile("w")      # the access lines, unread
        self.world = InProcess(access=access, extra=routes(route_count) + extra)
        logs.setup(self.world.worker.config.log, self.log)
        self.upstream, self.upstream_transport = self.world.idle_upstream()
        self.client = Client(self.world.worker)
        self.request, self.response = request, response
        self.vary = vary
        self.sent = 0
        self.expected: bytes | None = None

    def one(self, request: bytes, response: bytes) -> None:
        """A request in, the response back; the client's bytes checked."""
        self.client.send(request)
        if not self.upstream_transport.written:
            raise AssertionError("the request did not reach the backend")
        self.upstream_transport.written.clear()
        self.upstream.stream.data_received(response)
        out = self.client.transport.take()
        if self.vary:          # the answer as sent, less its Connection line
            if len(out) != len(response) - 24 or not out.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"unexpected answer: {out[:200]!r}")
        elif self.expected is None:
            self.expected = out
            if not out.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"unexpected answer: {out[:200]!r}")
        elif out != self.expected:
            raise AssertionError(f"answers differ: {out[:200]!r}")

    def run(self, count: int) -> float:
        """``count`` requests (made before the clock starts)."""
        if self.vary:
            requests, responses = varied(self.request, self.response,
                                         range(self.sent, self.sent + count))
            self.sent += count
        else:
            requests, responses = [self.request] * count, [self.response] * count
        one = self.one
        start = time.perf_counter()
        for request, response in zip(requests, responses):
            one(request, response)
        elapsed = time.perf_counter() - start
        tracer = self.world.worker.tracer
        if tracer is not None:
            tracer.take()        # as the worker's report would, between rounds
        return elapsed


def measure(name: str, request: bytes, response: bytes, args) -> None:
    bench = Bench(request, response, args.access_log, args.routes, args.vary,
                  args.config.replace("\\n", "\n"))
    if args.only_run:
        bench.run(args.count)     # for an instruction count under valgrind
        return
    bench.run(2000)                        # warm up: caches, first objects
    best = min(bench.run(args.count) for _ in range(args.rounds)) / args.count
    profile = cProfile.Profile()
    profile.enable()
    bench.run(args.count)
    profile.disable()
    stats = pstats.Stats(profile)
    calls = sum(row[1] for row in stats.stats.values()) / args.count
    print(f"{name}: {best * 1e6:.2f} µs and {calls:.0f} calls per request "
          f"({len(request)} bytes in, {len(response)} bytes back)")
    if args.top:
        rows = sorted(stats.stats.items(), key=lambda item: -item[1][1])[:args.top]
        for (path, line, func), (_, ncalls, _, _, _) in rows:
            where = f"{Path(path).parent.name}/{Path(path).name}:{line}" if line else "builtin"
            print(f"    {ncalls / args.count:5.2f}x  {func}  ({where})")


def instructions(request: str, args) -> float:
    """Machine instructions per request, counted by valgrind (cachegrind): the
    same figure on a busy machine as on an idle one. Two runs of N and 3N
    requests; their difference leaves out start-up."""
    counts = []
    for count in (args.count, 3 * args.count):
        argv = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
                "--cachegrind-out-file=/dev/null", sys.executable, __file__, "--only-run",
                "--count", str(count), "--request", request, "--routes", str(args.routes)]
        if args.access_log:
            argv.append("--access-log")
        if args.vary:
            argv.append("--vary")
        if args.config:
            argv += ["--config", args.config]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
        counts.append(int(re.search(r"I\s+refs:\s+([\d,]+)", out).group(1).replace(",", "")))
    return (counts[1] - counts[0]) / (2 * args.count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--routes", type=int, default=0, help="routes no request matches")
    parser.add_argument("--access-log", action="store_true", help="access log on (to a temporary file)")
    parser.add_argument("--top", type=int, default=0, help="list the most called functions")
    parser.add_argument("--only-run", action="store_true",
                        help="run --count requests once, unmeasured (for valgrind)")
    parser.add_argument("--request", choices=("wrk", "browser", "both"), default="both")
    parser.add_argument("--vary", action="store_true",
                        help="no head repeats: every request and answer is judged afresh")
    parser.add_argument("--config", default="",
                        help='more configuration, YAML (e.g. "tracing: {enabled: true}")')
    parser.add_argument("--instructions", action="store_true",
                        help="count machine instructions per request with valgrind instead")
    args = parser.parse_args()
    if args.instructions:
        if shutil.which("valgrind") is None:
            sys.exit("request-cost: --instructions needs valgrind (apt install valgrind)")
        for request in ("wrk", "browser") if args.request == "both" else (args.request,):
            print(f"{request}: {instructions(request, args) / 1000:.1f}k instructions per request")
        return
    if args.request in ("wrk", "both"):
        measure("wrk's request, 17-byte answer", WRK, SMALL, args)
    if args.request in ("browser", "both"):
        measure("browser's request, 2 KB answer", BROWSER, LARGE, args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
