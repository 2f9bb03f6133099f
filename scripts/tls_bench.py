"""scripts/bench-tls: HTTPS through l7lb, HAProxy and nginx, same run, same
ECDSA P-256 certificate, each proxy on one CPU (``--pin``, the default) with
wrk and the nginx backend on the other:

- keep-alive: small responses over long-lived TLS connections (wrk -c50);
- handshakes: a new TLS connection per request (``Connection: close``; wrk
  does not resume sessions, so each is a full handshake);
- 1 MB downloads over keep-alive TLS connections (MB/s);
- h2: HTTP/2 chosen by ALPN, h2load with 10 connections x 10 streams.

Peers: haproxy, nginx, l7lb (``tls.ktls: off``), and for kernel TLS (a kernel
with the tls ULP: the lab VM, docs/vm.md) l7lb-ktls (``ktls: on``) and
nginx-ktls (``ssl_conf_command Options KTLS``, sendfile on: the kTLS anchor).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import peer_bench as pb

PORT = 18443
BIG = "/big"
HAPROXY = """
global
  nbthread 1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend web
  bind {host}:{port} ssl crt {pem} alpn h2,http/1.1
  default_backend web
backend web
  http-reuse always
  server b1 {host}:{backend}
"""
NGINX = """
daemon off; master_process off; worker_processes 1; pid {dir}/p.pid;
error_log {dir}/p.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000;
  client_body_temp_path {dir}/p1; proxy_temp_path {dir}/p2; fastcgi_temp_path {dir}/p3;
  uwsgi_temp_path {dir}/p4; scgi_temp_path {dir}/p5;
  upstream b {{ server {host}:{backend}; keepalive 128; }}
  server {{ listen {host}:{port} ssl http2; ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3; {nginx_extra}
    location / {{ proxy_pass http://b; proxy_http_version 1.1;
      proxy_set_header Connection ""; }} }} }}
"""
L7LB = """
balancer: {{port: {port}, bind: {host}, workers: 1,
           tls: {{certificates: [{{cert: {cert}, key: {key}}}], ktls: "{ktls}"}}}}
backends: [{{host: {host}, port: {backend}}}]
pool: {{max_idle: 100}}
log: {{access: false, summary: 0}}
admin: {{socket: {dir}/admin-tls.sock}}
"""


def certificate(tmp: Path) -> dict[str, str]:
    cert, key, pem = tmp / "bench.crt", tmp / "bench.key", tmp / "bench.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=bench.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    pem.write_text(cert.read_text() + key.read_text())       # HAProxy wants both in one
    return {"cert": str(cert), "key": str(key), "pem": str(pem)}


def start(procs: pb.Procs, name: str, files: dict) -> subprocess.Popen:
    kernel = name.endswith("-ktls")
    fields = dict(host=pb.HOST, port=PORT, backend=pb.BACKEND_HTTP, dir=procs.tmp, **files,
                  ktls="on" if kernel else "off",
                  nginx_extra="ssl_conf_command Options KTLS; sendfile on;" if kernel else "")
    if name == "haproxy":
        conf = pb.write(procs.tmp, "haproxy-tls.cfg", HAPROXY.format(**fields))
        return procs.start(["haproxy", "-db", "-f", conf], PORT, name=name)
    if name.startswith("nginx"):
        conf = pb.write(procs.tmp, "nginx-tls.conf", NGINX.format(**fields))
        return procs.start(["nginx", "-c", conf], PORT, name=name)
    conf = pb.write(procs.tmp, "l7lb-tls.yaml", L7LB.format(**fields))
    return procs.start([pb.LBCTL, "run", "-c", conf], PORT, name=name)


TESTS = {
    "keep-alive": lambda seconds, cpu: pb.wrk(PORT, seconds, 50, cpu, "https"),
    "handshakes": lambda seconds, cpu: pb.wrk(PORT, seconds, 50, cpu, "https",
                                              header="Connection: close"),
    "1MB": lambda seconds, cpu: pb.wrk(PORT, seconds, 10, cpu, "https", BIG),
    "h2": lambda seconds, cpu: pb.h2load(PORT, seconds, 10, 10, cpu, "https")}
UNITS = {"keep-alive": "req/s", "handshakes": "conn/s", "1MB": "MB/s", "h2": "req/s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--only", nargs="+", default=["haproxy", "nginx", "l7lb"],
                        choices=["haproxy", "nginx", "l7lb", "l7lb-ktls", "nginx-ktls"])
    parser.add_argument("--tests", nargs="+", default=list(TESTS), choices=list(TESTS))
    parser.add_argument("--base", default="haproxy", help="the peer ratios are against")
    args = parser.parse_args()
    results = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="l7lb-tls-")))
        procs = pb.Procs(stack, tmp, True)
        (tmp / "www").mkdir()                 # the backend's files (peer_bench)
        (tmp / "www" / BIG.strip("/")).write_bytes(b"x" * 1_000_000)
        pb.nginx_backend(procs)
        files = certificate(tmp)
        for name in args.only:
            proc = start(procs, name, files)
            results[name] = {test: TESTS[test](args.seconds, pb.LOAD_CPU) for test in args.tests}
            procs.stop(proc)
    print("pinned: proxy on CPU 1; wrk and the nginx backend on CPU 0")
    base = results.get(args.base)
    for name, row in results.items():
        parts = []
        for test, unit in UNITS.items():
            if test not in row:
                continue
            value = row[test]["mbyte_s"] if test == "1MB" else row[test]["req_s"]
            ref = (base[test]["mbyte_s"] if test == "1MB" else base[test]["req_s"]) if base else 0
            ratio = f" ({value / ref:.2f}x)" if ref else ""
            parts.append(f"{test} {value:,.0f} {unit}{ratio}")
        p99 = f"; keep-alive p99 {row['keep-alive']['p99_ms']:.2f} ms" if "keep-alive" in row else ""
        print(f"{name:10} " + "; ".join(parts) + p99)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
