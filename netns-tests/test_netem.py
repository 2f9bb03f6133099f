"""netem on a stock kernel (the lab VM: scripts/test-vm): the WAN the
congestion-control figures emulate there. The host's kernel has no netem; its
tests shape with tbf and drop with nftables instead."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from conftest import Client, balancer_config, lbctl


def has_netem() -> bool:
    return subprocess.run(["modprobe", "-n", "sch_netem"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not has_netem(), reason="this kernel has no netem "
                                "(the lab VM has: scripts/test-vm)")


def test_netem_delay_and_loss_reach_the_upstream_connection_and_bytes_stay_exact(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"], extra="timeouts: {request: 120s}\n"))
    topo.wait_for_log(lb, '"event":"worker listening"')
    lbctl(topo, "backend", "set", f"{topo.hosts['b1']}:8000", "cc", "lb_delay").check_returncode()
    topo.netem("b1", "delay 40ms 2ms loss 1% rate 20mbit limit 400")
    body = bytes(range(256)) * 20000                           # 5 MB
    response, data = Client(topo).request("POST", "/up", body=body, timeout=120)
    answer = json.loads(data)
    assert response.status == 200 and answer["body_bytes"] == len(body)
    assert answer["body_sha256"] == hashlib.sha256(body).hexdigest()
    sockets = topo.tcp_sockets("lb", "b1", 8000)
    assert sockets and sockets[0]["algorithm"] == "lb_delay", sockets
    rtt = float(sockets[0]["rtt"].split("/")[0])
    assert rtt >= 35, sockets                  # netem's delay, seen by TCP itself
    assert int(sockets[0].get("retrans", "0/0").split("/")[1]) > 0, sockets   # and its loss
