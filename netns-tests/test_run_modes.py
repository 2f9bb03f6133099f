"""How users start it: `lbctl demo`, and `lbctl run` with several workers."""

from __future__ import annotations

import json
import signal

from conftest import Client, balancer_config
from topology import lbctl_path


def test_demo_serves_from_three_backends(topology):
    topo = topology(["lb"])
    demo = topo.spawn("lb", [lbctl_path(), "demo"], log_name="demo.log")
    for port in (9001, 9002, 9003, 8080):
        topo.wait_port("lb", port, from_host="lb", proc=demo, address="127.0.0.1")
    seen = set()
    # Weights 2:2:1; the first probes' state changes may restart the round
    # robin's sequence during the first requests, so ask more than 5 times.
    for _ in range(12):
        result = topo.run("lb", ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:8080/try"])
        seen.add(json.loads(result.stdout)["backend"])
    assert seen == {"demo1", "demo2", "demo3"}
    assert "l7lb demo" in topo.log(demo) and "curl" in topo.log(demo)
    demo.send_signal(signal.SIGINT)
    assert demo.wait(10) == 0


def test_two_workers_share_the_port_and_stop_cleanly(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"]).replace("workers: 1", "workers: 2"))
    assert len(topo.worker_pids(lb, 2)) == 2
    client = Client(topo)
    statuses = [client.request("GET", f"/w/{i}")[0].status for i in range(20)]
    assert statuses == [200] * 20
    lb.terminate()
    assert lb.wait(10) == 0
    assert topo.log(lb).count('"event":"worker stopped"') == 4   # each worker, then the control
