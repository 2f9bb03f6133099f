"""lbctl cc's figures: the workers' TCP_INFO sums combined into means."""

from __future__ import annotations

from dataplane.channel.messages import Counters
from dataplane.control.congestion import merge_samples


def sums(connections, cwnd, srtt, capped, cap, algorithms=("cubic",)) -> dict:
    return {"connections": connections, "algorithms": list(algorithms), "cwnd": cwnd,
            "srtt_us": srtt, "srtt_max_us": srtt, "retransmits": 1, "pacing_rate": 0,
            "capped": capped, "max_pacing_rate": cap, "segments": 100 * connections,
            "delivered_ce": 0, "min_rtt_us": srtt // connections // 2}


def test_means_are_weighted_by_connections_across_workers():
    one = Counters(0, 1, 0, 0, 0, tcp={"b": sums(1, 10, 100, 1, 1000)})
    three = Counters(1, 2, 0, 0, 0, tcp={"b": sums(3, 60, 900, 0, 0, ("bbr",))})
    merged = merge_samples([one, three])["b"]
    assert merged["connections"] == 4 and merged["cwnd"] == 70 // 4
    assert merged["srtt_us"] == 1000 // 4 and merged["srtt_max_us"] == 900
    assert merged["max_pacing_rate"] == 1000          # the one capped connection
    assert merged["algorithms"] == ["bbr", "cubic"] and merged["retransmits"] == 2
    assert merged["segments"] == 400 and merged["min_rtt_us"] == 50   # the smaller minimum


def test_no_cap_anywhere_is_none():
    merged = merge_samples([Counters(0, 1, 0, 0, 0, tcp={"b": sums(2, 20, 200, 0, 0)})])
    assert merged["b"]["max_pacing_rate"] is None
