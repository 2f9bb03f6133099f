"""congestion_control: auto against real paths: a near backend and a far,
lossy one (40 ms added by the delay line, 2% of segments dropped by
nftables) get different algorithms, said with their reasons by lbctl cc, and
new upstream connections use them."""

from __future__ import annotations

import json
import threading
import time

from conftest import Client, balancer_config, lbctl
from test_congestion import needs_bpf
from topology import SLOW

AUTO = "congestion:\n  auto: {interval: 1s, window: 5s, hold: 2s}\n"


def uploads(topo, stop: threading.Event) -> None:
    """1 MB uploads, one after another, alternating over the backends."""
    client = Client(topo)
    body = b"u" * 1_000_000
    while not stop.is_set():
        try:
            client.request("POST", "/upload", body=body, timeout=30)
        except OSError:
            client = Client(topo)


@needs_bpf
def test_auto_picks_lb_delay_near_and_bbr_far_and_lossy(topology):
    topo = topology(["client", "lb", "near", "far"])
    for host in ("near", "far"):
        topo.python_backend(host, host)
    topo.delay("far", 40)
    topo.lose("far", 2)
    config = balancer_config(topo, ["near", "far"], extra=AUTO + "log: {access: false}\n")
    lb = topo.balancer("lb", config.replace("port: 8000}", "port: 8000, congestion_control: auto}"))
    topo.wait_for_log(lb, '"event":"worker listening"')
    near, far = (f"{topo.hosts[h]}:8000" for h in ("near", "far"))
    stop = threading.Event()
    load = [threading.Thread(target=uploads, args=(topo, stop))]
    load[0].start()
    try:
        deadline = time.monotonic() + 30 * SLOW
        while time.monotonic() < deadline:
            rows = {b["name"]: b for b in json.loads(lbctl(topo, "cc", "--json").stdout)["backends"]}
            if rows[far]["in_effect"] == "bbr" and "auto_reason" in rows[near]:
                break
            time.sleep(0.5)
        assert rows[near]["requested"] == rows[far]["requested"] == "auto"
        assert rows[near]["in_effect"] == "lb_delay", rows[near]
        assert rows[near]["auto_reason"].endswith("→ lb_delay")
        assert rows[far]["in_effect"] == "bbr", rows[far]
        assert "(long and lossy) → bbr" in rows[far]["auto_reason"]
        # New connections to the far backend take bbr (pooled ones keep lb_delay):
        # uploads at once need more of them.
        load += [threading.Thread(target=uploads, args=(topo, stop)) for _ in range(3)]
        for thread in load[1:]:
            thread.start()
        deadline = time.monotonic() + 15 * SLOW
        while time.monotonic() < deadline:
            used = {s.get("algorithm") for s in topo.tcp_sockets("lb", "far", 8000)}
            if "bbr" in used:
                break
            time.sleep(0.2)
        assert "bbr" in used
        assert {s.get("algorithm") for s in topo.tcp_sockets("lb", "near", 8000)} <= {"lb_delay"}
        human = lbctl(topo, "cc").stdout
        assert f"auto {far}: bbr (min_rtt 4" in human and f"auto {near}: lb_delay (min_rtt" in human
    finally:
        stop.set()
        for thread in load:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in load)
