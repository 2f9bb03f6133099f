"""scripts/bench: l7lb beside HAProxy and nginx, same backends, same run.

HTTP: wrk with keep-alive against a small nginx response: req/s, p50, p99
(``--request browser``: a browser's request of about 550 bytes and 11
headers for a 2 KB file instead).
HTTP/2 (``--protocol h2c``): h2load, 10 connections x 10 streams by default,
with prior knowledge to each proxy and HTTP/1.1 from it to the backend, or
h2c with ``--backend-protocol h2c`` (HAProxy ``proto h2`` on its server,
l7lb ``protocol: h2c``; nginx proxies HTTP/2 to backends only for gRPC, so
it sits that one out).
TCP: iperf3 with 1 and 8 streams through each proxy's TCP mode: Gbit/s.
Every figure is also printed as a ratio to HAProxy's in the same run.
Everything listens on 127.0.0.1 and stops at the end. With --pin, each proxy
(every process of it) runs on CPU 1 and wrk, iperf3 and the backends on CPU 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

LBCTL = str(Path(sys.executable).parent / "lbctl")
HOST = "127.0.0.1"
BACKEND_HTTP, BACKEND_TCP = 18001, 18201
PORTS = {"haproxy": (18080, 18090), "nginx": (18081, 18091),
         "l7lb-splice": (18082, 18092), "l7lb-copy": (18083, 18093),
         "l7lb-sockmap": (18085, 18095), "l7lb-auto": (18086, 18096),
         "l7lb-no-pool": (18084, 0)}

NGINX_BACKEND = """
daemon off; master_process off; worker_processes 1; pid {dir}/b.pid;
error_log {dir}/b.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path {dir}/b1; proxy_temp_path {dir}/b2; fastcgi_temp_path {dir}/b3;
  uwsgi_temp_path {dir}/b4; scgi_temp_path {dir}/b5;
  server {{ listen {host}:{port}{backend_h2}; root {dir}/www;
    location = / {{ return 200 "hello from nginx\\n"; }} }} }}
"""
BROWSER_FILE = "assets/app.js"       # 2 KB, served by the nginx backend
# What a browser sends for a script on a page (Chrome's headers, HTTP/1.1).
BROWSER_REQUEST = (
    "GET /" + BROWSER_FILE + "?v=12 HTTP/1.1\r\nHost: {host}:{port}\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\r\n"
    "Accept: */*\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n"
    "Referer: http://www.example.com/index.html\r\n"
    "Cookie: session=4f2a9c1e8b7d6a5f3e2d1c0b; theme=dark; lang=en\r\n"
    "Sec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n"
    "Connection: keep-alive\r\n\r\n")
NGINX_PROXY = """
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off; master_process off; worker_processes {workers}; pid {dir}/p.pid;
error_log {dir}/p.err warn;
events {{ worker_connections 4096; }}
http {{ access_log {nginx_log}; keepalive_requests 10000000;
  client_body_temp_path {dir}/p1; proxy_temp_path {dir}/p2; fastcgi_temp_path {dir}/p3;
  uwsgi_temp_path {dir}/p4; scgi_temp_path {dir}/p5;
  upstream b {{ server {host}:{backend}; keepalive 128; }}
  server {{ listen {host}:{port}{nginx_h2}; location / {{ proxy_pass http://b;
      proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
stream {{ server {{ listen {host}:{tcp_port}; proxy_pass {host}:{tcp_backend}; }} }}
"""
HAPROXY = """
global
  nbthread {workers}
  maxconn 4096
{haproxy_log}
defaults
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend web
  mode http
  bind {host}:{port}{haproxy_h2}
{haproxy_http_log}  default_backend web
backend web
  mode http
  http-reuse always
  server b1 {host}:{backend}{haproxy_backend_h2}
listen tcp
  mode tcp
  bind {host}:{tcp_port}
  server t1 {host}:{tcp_backend}
"""
L7LB = """
balancer: {{port: {port}, bind: {host}, mode: {mode}, workers: {workers}, relay: {relay}{l7lb_h2}}}
backends: [{{host: {host}, port: {backend}}}]
pool: {{max_idle: {max_idle}}}
log: {{access: {access}, level: info, summary: 0}}
admin: {{socket: {dir}/admin-{port}.sock}}
{routes}{l7lb_extra}"""


def routes(count: int) -> str:
    """``count`` routes the bench's requests pass over (none matches them):
    hosts and path prefixes, as a site's table has them."""
    if not count:
        return ""
    lines = [f"  - {{match: {{host: site{i}.example.com}}}}" if i % 2 else
             f"  - {{match: {{path: {{prefix: /service{i}/}}}}}}" for i in range(count)]
    return "routes:\n" + "\n".join(lines) + "\n"


def listening(port: int) -> bool:
    return bool(subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                               text=True).stdout.strip())


def wait_port(port: int, timeout: float = 10) -> None:
    """Wait until something listens, without connecting: a probe connection
    through a TCP proxy would reach iperf3 and spoil its next test. The lab
    VM under software emulation (docs/vm.md) sets L7LB_LAB_SLOW to wait longer."""
    deadline = time.monotonic() + timeout * float(os.environ.get("L7LB_LAB_SLOW", "1"))
    while time.monotonic() < deadline:
        if listening(port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


PROXY_CPU, LOAD_CPU = "1", "0"


def pinned(argv: list[str], cpu: str | None) -> list[str]:
    """Run ``argv`` (and every process it forks) on one CPU when pinning."""
    return ["taskset", "-c", cpu, *argv] if cpu else argv


class Procs:
    def __init__(self, stack: ExitStack, tmp: Path, pin: bool) -> None:
        self.tmp = tmp
        self.pin = pin
        stack.callback(self.stop_all)
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], *ports: int, name: str, proxy: bool = True
              ) -> subprocess.Popen:
        argv = pinned(argv, (PROXY_CPU if proxy else LOAD_CPU) if self.pin else None)
        for port in ports:
            if listening(port):
                raise RuntimeError(f"port {port} is already in use; stop what holds it")
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        for port in ports:
            wait_port(port)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds a process has used so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def access_logs(on: bool, tmp: Path) -> dict[str, str]:
    """Each proxy's access log, off or on (one line per request, to its
    output: HAProxy in ``option httplog`` format, nginx in its combined one,
    l7lb in its JSON lines)."""
    return {"access": "true" if on else "false",
            "haproxy_log": "  log stdout format raw local0" if on else "",
            "haproxy_http_log": "  log global\n  option httplog\n" if on else "",
            "nginx_log": f"{tmp}/nginx-access.log" if on else "off"}


def nginx_backend(procs: Procs, h2c: bool = False) -> subprocess.Popen:
    """The HTTP backend every bench uses: nginx answering a short body (and
    BROWSER_FILE, 2 KB, from its root); ``h2c``: it speaks h2c only."""
    asset = procs.tmp / "www" / BROWSER_FILE
    asset.parent.mkdir(parents=True, exist_ok=True)
    asset.write_bytes(b"/* 2 KB of script */\n".ljust(2048, b"x"))
    conf = write(procs.tmp, "nginx-backend.conf", NGINX_BACKEND.format(
        dir=procs.tmp, host=HOST, port=BACKEND_HTTP, backend_h2=" http2" if h2c else ""))
    return procs.start(["nginx", "-c", conf], BACKEND_HTTP, name="backend-nginx", proxy=False)


def start_proxy(procs: Procs, name: str, workers: int, route_count: int = 0,
                access_log: bool = False, h2c: bool = False,
                h2c_backend: bool = False, l7lb_extra: str = "") -> list[subprocess.Popen]:
    """``h2c``: the HTTP listeners speak HTTP/2 with prior knowledge (HAProxy
    ``proto h2``, nginx ``http2``, l7lb ``http2.cleartext``); ``h2c_backend``:
    so does the backend; ``l7lb_extra``: more of l7lb's configuration."""
    port, tcp_port = PORTS[name]
    fields = dict(host=HOST, port=port, tcp_port=tcp_port, backend=BACKEND_HTTP,
                  tcp_backend=BACKEND_TCP, workers=workers, dir=procs.tmp,
                  routes=routes(route_count), **access_logs(access_log, procs.tmp),
                  l7lb_extra=l7lb_extra + "\n" if l7lb_extra else "",
                  haproxy_h2=" proto h2" if h2c else "", nginx_h2=" http2" if h2c else "",
                  haproxy_backend_h2=" proto h2" if h2c_backend else "",
                  l7lb_h2=(", http2: {cleartext: true}" if h2c else "")
                  + (", protocol: h2c" if h2c_backend else ""))
    if name == "haproxy":
        conf = write(procs.tmp, "haproxy.cfg", HAPROXY.format(**fields))
        return [procs.start(["haproxy", "-db", "-f", conf], port, tcp_port, name=name)]
    if name == "nginx":
        conf = write(procs.tmp, "nginx-proxy.conf", NGINX_PROXY.format(**fields))
        return [procs.start(["nginx", "-c", conf], port, tcp_port, name=name)]
    if name == "l7lb-no-pool":     # a new backend connection for every request
        http = write(procs.tmp, f"{name}-http.yaml", L7LB.format(
            **fields, mode="http", relay="auto", max_idle=0))
        return [procs.start([LBCTL, "run", "-c", http], port, name=f"{name}-http")]
    relay = name.split("-")[1]
    http = write(procs.tmp, f"{name}-http.yaml", L7LB.format(
        **fields, mode="http", relay="auto" if relay in ("splice", "auto") else relay,
        max_idle=100))
    tcp = write(procs.tmp, f"{name}-tcp.yaml", L7LB.format(
        **{**fields, "port": tcp_port, "backend": BACKEND_TCP, "routes": "", "l7lb_h2": ""},
        mode="tcp",
        relay=relay, max_idle=100))
    return [procs.start([LBCTL, "run", "-c", http], port, name=f"{name}-http"),
            procs.start([LBCTL, "run", "-c", tcp], tcp_port, name=f"{name}-tcp")]


def pool_figures(log_path: Path) -> dict:
    """Backend connections opened and reused, from the workers' pool stats at stop."""
    opened = reused = 0
    for line in log_path.read_text().splitlines():
        if '"event":"pool stats"' in line:
            for hosts in json.loads(line)["clusters"].values():
                for counters in hosts.values():
                    opened += counters["opened"]
                    reused += counters["reused"]
    total = opened + reused
    return {"backend_connections_opened": opened,
            "reuse_ratio": reused / total if total else 0.0}


def browser_script(tmp: Path, port: int) -> str:
    """A wrk script that sends BROWSER_REQUEST as it is (wrk's own headers
    come in no fixed order)."""
    request = BROWSER_REQUEST.format(host=HOST, port=port)
    return write(tmp, f"browser-{port}.lua",
                 f"local raw = {request!r}\nrequest = function() return raw end\n")


def wrk(port: int, seconds: int, connections: int, cpu: str | None, scheme: str = "http",
        path: str = "/", header: str | None = None, script: str | None = None) -> dict:
    """wrk's figures; ``header`` (e.g. "Connection: close") on every request;
    ``script``: a wrk Lua script that makes the requests."""
    extra = ["-H", header] if header else []
    if script:
        extra += ["-s", script]
    out = subprocess.run(pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                                 *extra, f"{scheme}://{HOST}:{port}{path}"], cpu),
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)

    def percentile(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    return {"req_s": rps, "p50_ms": percentile("50"), "p99_ms": percentile("99"),
            "errors": errors.group(0) if errors else None,
            "mbyte_s": float(transfer.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1.0,
                                                   "GB": 1e3}[transfer.group(2)]}


def h2load(port: int, seconds: int, connections: int, streams: int, cpu: str | None,
           scheme: str = "http") -> dict:
    """h2load's figures over HTTP/2 (h2c, or h2 with ``scheme`` https):
    ``connections`` x ``streams`` at once."""
    out = subprocess.run(pinned(["h2load", "-t1", f"-c{connections}", f"-m{streams}",
                                 f"-D{seconds}", f"{scheme}://{HOST}:{port}/"], cpu),
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out)
    return {"req_s": int(done.group(2)) / seconds,
            "errors": None if done.group(1) == done.group(2) else f"{done.group(1)} done, "
                                                                   f"{done.group(2)} succeeded",
            "mean_ms": float(mean.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[mean.group(2)]}


def iperf(port: int, seconds: int, streams: int, cpu: str | None) -> float:
    out = subprocess.run(pinned(["iperf3", "-c", HOST, "-p", str(port), "-t", str(seconds),
                                 "-P", str(streams), "-J"], cpu), capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    report = json.loads(out)
    if "error" in report:
        raise RuntimeError(f"iperf3 through port {port}: {report['error']}")
    return report["end"]["sum_received"]["bits_per_second"] / 1e9


def measure(port: int, tcp_port: int, args) -> dict:
    cpu = LOAD_CPU if args.pin else None
    script = browser_script(args.tmp, port) if args.request == "browser" else None
    if args.protocol == "h2c":
        return h2load(port, args.seconds, args.h2_connections, args.h2_streams, cpu)
    result = wrk(port, args.seconds, args.connections, cpu, script=script)
    if tcp_port and args.tcp_seconds:
        result["tcp_1_gbit"] = iperf(tcp_port, args.tcp_seconds, 1, cpu)
        result["tcp_8_gbit"] = iperf(tcp_port, args.tcp_seconds, 8, cpu)
    return result


def table(results: dict) -> str:
    base = results.get("haproxy", {})
    cols = [("req_s", "req/s", True), ("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False),
            ("mean_ms", "mean ms", False),
            ("tcp_1_gbit", "TCP x1 Gbit/s", True), ("tcp_8_gbit", "TCP x8 Gbit/s", True)]
    lines = [f"{'target':<14}" + "".join(f"{label:>24}" for _, label, _ in cols)]
    for name, row in results.items():
        cells = []
        for key, _, _ in cols:
            value = row.get(key)
            if value is None:
                cells.append(f"{'-':>24}")
                continue
            ratio = f" ({value / base[key]:.2f}x)" if base.get(key) else ""
            cells.append(f"{value:>14.{3 if 'ms' in key else 1}f}{ratio:>10}")
        lines.append(f"{name:<14}" + "".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="l7lb workers = HAProxy nbthread")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per target")
    parser.add_argument("--tcp-seconds", type=int, default=5, help="iperf3 duration per run (0: no TCP runs)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--only", nargs="*", default=list(PORTS), help="targets to run")
    parser.add_argument("--routes", type=int, default=0,
                        help="l7lb HTTP targets get this many routes that no request matches")
    parser.add_argument("--access-log", action="store_true",
                        help="every proxy logs each request (default: no access logs)")
    parser.add_argument("--pin", action="store_true",
                        help=f"proxy on CPU {PROXY_CPU}; wrk, iperf3, backends on CPU {LOAD_CPU}")
    parser.add_argument("--request", choices=("small", "browser"), default="small",
                        help="small: wrk's GET / for 17 bytes; browser: a browser's request "
                             "(550 bytes, 11 headers) for a 2 KB file")
    parser.add_argument("--protocol", choices=("http1", "h2c"), default="http1",
                        help="h2c: HTTP/2 with prior knowledge to every proxy, load from h2load "
                             "(HTTP/1.1 to the backend; no TCP runs)")
    parser.add_argument("--backend-protocol", choices=("http1", "h2c"), default="http1",
                        help="h2c: the proxies speak h2c to the backend too (with --protocol "
                             "h2c; nginx sits it out)")
    parser.add_argument("--h2-connections", type=int, default=10, help="h2load connections")
    parser.add_argument("--h2-streams", type=int, default=10,
                        help="h2load streams at once per connection")
    parser.add_argument("--l7lb-config", default="",
                        help='more configuration for l7lb, YAML (e.g. "tracing: {enabled: true}")')
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with ExitStack() as stack:
        tmp = args.tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="l7lb-bench-")))
        procs = Procs(stack, tmp, args.pin)
        h2c_backend = args.backend_protocol == "h2c"
        if h2c_backend and args.protocol != "h2c":
            parser.error("--backend-protocol h2c needs --protocol h2c")
        nginx_backend(procs, h2c_backend)
        procs.start(["iperf3", "-s", "-B", HOST, "-p", str(BACKEND_TCP)], BACKEND_TCP,
                    name="backend-iperf3", proxy=False)
        if args.protocol == "http1" or h2c_backend:    # the backend speaks it too
            results["direct"] = measure(BACKEND_HTTP, BACKEND_TCP, args)
        for name in args.only:
            if h2c_backend and name == "nginx":
                continue
            running = start_proxy(procs, name, args.workers, args.routes, args.access_log,
                                  args.protocol == "h2c", h2c_backend, args.l7lb_config)
            results[name] = measure(*PORTS[name], args)
            for proc in running:
                procs.stop(proc)
            if name.startswith("l7lb"):
                results[name] |= pool_figures(tmp / f"{name}-http.log")
            print(f"bench: {name} done", file=sys.stderr)
    machine = {"cpus": os.cpu_count(), "kernel": platform.release(),
               "python": platform.python_version(), "workers": args.workers,
               "wrk_connections": args.connections, "seconds": args.seconds,
               "request": args.request, "protocol": args.protocol,
               "backend_protocol": args.backend_protocol,
               "l7lb_routes": args.routes, "access_log": args.access_log,
               "pinned": f"proxy on CPU {PROXY_CPU}, load and backends on CPU {LOAD_CPU}"
               if args.pin else "no"}
    print(f"machine: {machine}")
    print(table(results))
    for name, row in results.items():
        if "reuse_ratio" in row:
            print(f"{name}: {row['backend_connections_opened']} backend connections opened, "
                  f"reuse ratio {row['reuse_ratio']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
