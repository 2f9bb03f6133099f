"""lb_delay beside a cubic flow on one bottleneck (50 Mbit/s, 20 ms base RTT
from the delay line, a buffer of one BDP): alone it keeps the queue short;
when cubic joins, its mode switch holds a share of 0.35 or more from within
2 s on; when cubic leaves, low delay returns within 2 s. Without the switch
(compete 0) the same path leaves it starved, which is what the switch is
for. (The 0.40 target is measured over 27 cells by scripts/bench-cc-coexist:
docs/congestion.md.)"""

from __future__ import annotations

from coexist import measure
from conftest import balancer_config, lbctl
from test_congestion import needs_bpf

RATE_MBIT, RTT_MS = 50, 20
BDP = RATE_MBIT * 1_000_000 // 8 * RTT_MS // 1000


@needs_bpf
def test_lb_delay_takes_its_share_from_cubic_and_its_low_delay_back(topology):
    topo = topology(["client", "lb", "b1", "x"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"], extra="log: {access: false}\n")
                       .replace("port: 8000}", "port: 8000, congestion_control: lb_delay}"))
    topo.wait_for_log(lb, '"event":"worker listening"')
    topo.delay("b1", RTT_MS)
    topo.shape("b1", f"{RATE_MBIT}mbit", limit=BDP)
    run = measure(topo, "b1", "x", "cubic", 1, alone=3, together=8, after=4).summary()
    assert run["alone_mbit_s"] > 0.9 * RATE_MBIT, run
    # Alone the queue stays short: within the delay line's own jitter (up to
    # about 1 ms here, docs/congestion.md) of lb_delay's 2 ms.
    assert run["alone_rtt_p50_ms"] < run["base_rtt_ms"] + 3, run
    assert run["to_share_s"] is not None and run["to_share_s"] <= 2, run
    assert run["share"] >= 0.35, run
    assert run["to_low_delay_s"] is not None and run["to_low_delay_s"] <= 2, run

    assert lbctl(topo, "cc", "set", "lb_delay", "compete", "0").returncode == 0
    starved = measure(topo, "b1", "x", "cubic", 1, alone=1, together=5, after=0.5).summary()
    assert starved["share"] < 0.2, starved
