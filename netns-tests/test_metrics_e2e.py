"""Prometheus metrics end to end: Debian's prometheus scrapes the balancer
every second, and its query API shows the requests the test sent; /healthz
and /ready answer as an orchestrator expects."""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.parse

import pytest

from conftest import balancer_config

pytestmark = pytest.mark.skipif(not shutil.which("prometheus"),
                                reason="needs prometheus (scripts/setup)")

PROMETHEUS = """global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: l7lb
    static_configs: [{{targets: ["{lb}:9100"]}}]
"""


def http_get(topo, url: str) -> tuple[int, str]:
    out = topo.run("client", ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", url])
    body, _, status = out.stdout.decode().rpartition("\n")
    return int(status), body


def test_prometheus_scrapes_the_requests_sent_and_ready_follows_the_backends(topology):
    topo = topology(["client", "lb", "b1", "b2"])
    backends = {b: topo.python_backend(b, b) for b in ("b1", "b2")}
    lb_ip = topo.hosts["lb"]
    topo.balancer("lb", balancer_config(topo, ["b1", "b2"], extra=(
        f"metrics: {{listen: \"{lb_ip}:9100\"}}\nhealth: {{interval: 100ms}}\n")))
    (topo.tmp / "prometheus.yml").write_text(PROMETHEUS.format(lb=lb_ip))
    topo.spawn("lb", ["prometheus", f"--config.file={topo.tmp / 'prometheus.yml'}",
                      f"--storage.tsdb.path={topo.tmp / 'tsdb'}",
                      f"--web.listen-address={lb_ip}:9090"], log_name="prometheus.log")
    topo.wait_port("lb", 9090, from_host="client")

    assert http_get(topo, f"http://{lb_ip}:9100/healthz")[0] == 200
    status, text = http_get(topo, f"http://{lb_ip}:9100/ready")
    assert status == 200 and "2 healthy backends" in text, text
    for i in range(25):
        assert http_get(topo, f"http://{lb_ip}:8080/n{i}")[0] == 200

    query = urllib.parse.quote("sum(l7lb_backend_http_requests_total)")
    deadline, seen = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        _, body = http_get(topo, f"http://{lb_ip}:9090/api/v1/query?query={query}")
        result = json.loads(body)["data"]["result"]
        seen = float(result[0]["value"][1]) if result else None
        if seen == 25:
            break
        time.sleep(0.5)
    assert seen == 25, seen
    status, text = http_get(topo, f"http://{lb_ip}:9100/metrics")
    assert 'l7lb_backend_http_responses_total{backend="%s:8000",cluster="default",code="2xx"}' \
        % topo.hosts["b1"] in text
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("l7lb_backend_http_request_duration_seconds_count{"))
    assert counted == 25, counted       # every answered request in the histogram

    for proc in backends.values():
        proc.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while http_get(topo, f"http://{lb_ip}:9100/ready")[0] != 503:
        assert time.monotonic() < deadline, "still ready with both backends dead"
        time.sleep(0.1)
    assert http_get(topo, f"http://{lb_ip}:9100/nope")[0] == 404
