"""Route matching cost per request (a micro-benchmark, no I/O): tables of 1,
10 and 100 routes, mixed as sites have them (exact and wildcard hosts, path
prefixes, a few exact paths, regexes and header matches), asked with the
requests that hit their first, middle and last routes and with one that
matches nothing."""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataplane.config import parse  # noqa: E402
from dataplane.routing.table import RouteTable  # noqa: E402


def routes_yaml(count: int) -> str:
    kinds = [
        lambda i: f"{{match: {{host: site{i}.example.com}}, cluster: c}}",
        lambda i: f"{{match: {{host: '*.zone{i}.example.org', path: {{prefix: /api/v{i}/}}}}, "
                  f"cluster: c}}",
        lambda i: f"{{match: {{path: {{prefix: /static{i}/}}}}, cluster: c}}",
        lambda i: f"{{match: {{path: {{exact: /health{i}}}}}, respond: {{status: 200}}}}",
        lambda i: f"{{match: {{path: {{prefix: /app{i}/}}, method: [GET, HEAD]}}, cluster: c}}",
        lambda i: f"{{match: {{header: [{{name: X-Tenant, equals: t{i}}}]}}, cluster: c}}",
        lambda i: f"{{match: {{path: {{regex: '/user/{i}/[0-9]+'}}}}, cluster: c}}",
    ]
    lines = [f"  - {kinds[(i * 3) % len(kinds)](i)}" for i in range(count)]
    return ("clusters: {c: {backends: [{host: 198.18.0.9, port: 80}]}}\n"
            "routes:\n" + "\n".join(lines) + "\n")


REQUESTS = {
    "first": (b"GET", b"/static0/a.css", b"site0.example.com"),
    "middle": (b"GET", b"/app50/page?x=1", b"www.example.com"),
    "last": (b"GET", b"/static99/x.js", b"www.example.com"),
    "none": (b"GET", b"/nothing/here?q=1", b"other.example.net"),
}
HEADERS = [(b"Host", b"h"), (b"User-Agent", b"bench"), (b"Accept", b"*/*"),
           (b"X-Tenant", b"none")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000)
    args = parser.parse_args()
    print(f"{'routes':>7}" + "".join(f"{name:>10}" for name in REQUESTS) + "   (µs per request)")
    for count in (1, 10, 100):
        table = RouteTable(parse(routes_yaml(count)).routes)
        cells = []
        for method, target, host in REQUESTS.values():
            seconds = timeit.timeit(lambda: table.find(method, target, host, HEADERS),
                                    number=args.number)
            cells.append(f"{seconds / args.number * 1e6:>10.2f}")
        print(f"{count:>7}" + "".join(cells))


if __name__ == "__main__":
    main()
