"""``lbctl demo``: three local backends and a balancer on an embedded config."""

from __future__ import annotations

import os
import socket as sockets
import subprocess
import sys
import tempfile
import time

import click

from dataplane.config import parse
from dataplane.serve import serve

DEMO_CONFIG = """
balancer:
  port: {port}
  bind: 127.0.0.1
  mode: http
  workers: 1
backends:
  - {{host: 127.0.0.1, port: {p1}, weight: 100}}
  - {{host: 127.0.0.1, port: {p2}, weight: 100}}
  - {{host: 127.0.0.1, port: {p3}, weight: 50, congestion_control: lb_delay}}
timeouts: {{shutdown: 2s}}
log: {{format: console}}
admin: {{socket: {socket}}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
"""


def _wait_listening(ports: list[int], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    for port in ports:
        while True:
            try:
                sockets.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise click.ClickException(f"demo backend on port {port} did not start")
                time.sleep(0.05)


def run_demo(port: int, backend_port: int, metrics_port: int) -> int:
    ports = [backend_port + i for i in range(3)]
    socket = os.path.join(tempfile.gettempdir(), f"l7lb-demo-{port}.sock")
    config = parse(DEMO_CONFIG.format(port=port, p1=ports[0], p2=ports[1], p3=ports[2],
                                      socket=socket, metrics=metrics_port), "<demo>")
    backends = [subprocess.Popen([sys.executable, "-m", "dataplane.testing.backend",
                                  "--name", f"demo{i + 1}", "--port", str(p)],
                                 stdout=subprocess.DEVNULL)
                for i, p in enumerate(ports)]
    url = f"http://127.0.0.1:{port}/"
    click.echo(f"""
l7lb demo: three backends on 127.0.0.1:{ports[0]}-{ports[2]} (weights 100, 100, 50;
the third's connections use lb_delay, our BPF algorithm, or the pacer without BPF),
balancer on {url}, its dashboard on http://127.0.0.1:{metrics_port}/

Try, in another terminal:
  lbctl --socket {socket} backends                 # what the balancer knows
  lbctl --socket {socket} cc                       # congestion control per backend
  lbctl --socket {socket} backend set 127.0.0.1:{ports[0]} cc bbr
  curl -s {url}hello | python3 -m json.tool       # which backend answered, what it saw
  for i in $(seq 10); do curl -s -o /dev/null -w '%{{http_code}} ' -D - {url} | grep -i x-backend; done
  curl -s {url}bytes/1000000?framing=chunked | wc -c
Ctrl-C stops everything.
""")
    try:
        _wait_listening(ports)     # else the first health probes find them down
        return serve(config)
    finally:
        for backend in backends:
            backend.terminate()
        for backend in backends:
            backend.wait(timeout=5)
