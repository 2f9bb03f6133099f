"""scripts/bench-idle: memory per idle keep-alive client connection, l7lb
(one worker) beside HAProxy (nbthread 1), same run.

Each target gets N client connections that each complete one request and then
stay open, idle. The figure is the growth of the proxy's resident memory
(every process of it) from before the first connection to after the last,
divided by N; kernel socket buffers are not in it, for either proxy.
``--protocol h2c``: the connections speak HTTP/2 with prior knowledge (one
stream each, then idle), to HAProxy ``proto h2`` and l7lb
``http2.cleartext``.
"""

from __future__ import annotations

import argparse
import resource
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import peer_bench as pb

HAPROXY = """
global
  nbthread 1
  maxconn {maxconn}
defaults
  mode http
  timeout connect 2s
  timeout client 300s
  timeout server 60s
  timeout http-keep-alive 300s
frontend web
  bind {host}:{port}{h2}
  default_backend web
backend web
  http-reuse always
  server b1 {host}:{backend}
"""
L7LB = """
balancer: {{port: {port}, bind: {host}, mode: http, workers: 1{h2}}}
backends: [{{host: {host}, port: {backend}}}]
log: {{access: false, level: info, summary: 0}}
timeouts: {{idle: 300s}}
admin: {{socket: {dir}/admin.sock}}
"""
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                              text=True).stdout.split()
    return [pid, *(p for child in children for p in tree(int(child)))]


def one_request(port: int) -> socket.socket:
    sock = socket.create_connection((pb.HOST, port))
    sock.sendall(REQUEST)
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"nginx\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("proxy closed a connection")
        got += chunk
    return sock


def one_stream(port: int) -> socket.socket:
    """An h2c connection that has carried one request (h2's client keeps the
    protocol: SETTINGS and their acknowledgements)."""
    import h2.config
    import h2.connection
    import h2.events
    sock = socket.create_connection((pb.HOST, port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "bench"),
                          (":path", "/")], end_stream=True)
    sock.sendall(conn.data_to_send())
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("proxy closed a connection")
        events = conn.receive_data(chunk)
        sock.sendall(conn.data_to_send())
        if any(isinstance(event, h2.events.StreamEnded) for event in events):
            return sock


def measure(port: int, pids: list[int], count: int, h2c: bool) -> float:
    connect = one_stream if h2c else one_request
    for _ in range(20):       # warm up: pools, first allocations
        connect(port).close()
    time.sleep(0.5)
    before = rss_kib(pids)
    held = [connect(port) for _ in range(count)]
    time.sleep(1)
    after = rss_kib(pids)
    for sock in held:
        sock.close()
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--protocol", choices=("http1", "h2c"), default="http1")
    args = parser.parse_args()
    # This client and each proxy need a descriptor per connection (HAProxy
    # raises its own soft limit to about 2 * maxconn, under the hard limit).
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2 * args.connections + 1000:
        sys.exit(f"bench-idle: the descriptor limit ({hard}) is too low for "
                 f"{args.connections} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="l7lb-idle-")))
        procs = pb.Procs(stack, tmp, False)
        pb.nginx_backend(procs)
        h2c = args.protocol == "h2c"
        fields = dict(host=pb.HOST, backend=pb.BACKEND_HTTP, dir=tmp,
                      maxconn=args.connections + 100)
        port = pb.PORTS["haproxy"][0]
        proc = procs.start(["haproxy", "-db", "-f", pb.write(
            tmp, "haproxy.cfg", HAPROXY.format(port=port, h2=" proto h2" if h2c else "",
                                               **fields))], port, name="haproxy")
        results["haproxy"] = measure(port, tree(proc.pid), args.connections, h2c)
        procs.stop(proc)
        port = pb.PORTS["l7lb-splice"][0]
        proc = procs.start([pb.LBCTL, "run", "-c", pb.write(
            tmp, "l7lb.yaml", L7LB.format(port=port, h2=", http2: {cleartext: true}" if h2c
                                          else "", **fields))], port, name="l7lb")
        time.sleep(0.5)
        results["l7lb"] = measure(port, tree(proc.pid), args.connections, h2c)
        procs.stop(proc)
    print(f"idle keep-alive client connections: {args.connections} ({args.protocol})")
    for name, kib in results.items():
        print(f"{name:8} {kib:6.2f} KiB each")


if __name__ == "__main__":
    main()
