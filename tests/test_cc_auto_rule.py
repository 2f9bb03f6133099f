"""congestion_control: auto's rule on samples recorded from real paths
(netns: a near backend, a far one with 40 ms added and 2% loss, and the near
one again with a cubic flow sharing a 50 Mbit/s bottleneck), and the control
side's bounded rate: one verdict per interval, one move per hold."""

from __future__ import annotations

from dataplane.channel.messages import BackendState, Counters
from dataplane.config import parse
from dataplane.config.schema import AutoCcSettings
from dataplane.config.units import Duration
from dataplane.congestion.auto_rule import PathSample, PathWindow, choose, initial
from dataplane.control.cc_auto import AutoCongestion
from dataplane.control.state import State, states_of

EVERYTHING = {"reno", "cubic", "bbr", "dctcp", "lb_aimd", "lb_delay"}
# (connections, min_rtt_us, srtt_us, retransmits, segments, delivered_ce), a second apart
NEAR = [(1, 7, 206, 0, 6945, 0), (1, 7, 153, 0, 9721, 0), (1, 7, 158, 0, 10415, 0),
        (1, 7, 104, 0, 11109, 0), (1, 7, 75, 0, 11803, 0)]
FAR_LOSSY = [(1, 40000, 40277, 96, 7031, 0), (1, 40000, 42354, 255, 9963, 0),
             (1, 40000, 44864, 269, 10069, 0), (1, 40000, 40539, 276, 10367, 0),
             (1, 40000, 40482, 284, 10680, 0)]
NEAR_WITH_CUBIC = [(1, 7, 24783, 25, 12150, 0), (1, 7, 27119, 25, 12523, 0),
                   (1, 7, 27119, 25, 12523, 0), (1, 7, 31027, 33, 12946, 0)]
FAR_WITH_CUBIC = [(1, 20000, 60000 + 2000 * i, 100 + 20 * i, 10000 + 1000 * i, 0)
                  for i in range(5)]           # 2% lost, but to a queue cubic keeps full
FAR_CLEAN = [(1, 80000, 80400, 0, 20000 + 1000 * i, 0) for i in range(5)]
DATACENTRE_CE = [(4, 150, 300, 0, 50000 + 5000 * i, 120 + 40 * i) for i in range(5)]


def window(rows, seconds: float = 60) -> PathWindow:
    w = PathWindow(seconds)
    for at, row in enumerate(rows):
        w.add(PathSample(float(at), *row))
    return w


def test_a_near_clean_path_gets_lb_delay_with_its_figures():
    verdict = choose(window(NEAR), "lb_delay", EVERYTHING)
    assert verdict.algorithm == "lb_delay"
    assert verdict.reason == "min_rtt 0.007 ms, 0.00% retransmitted → lb_delay"


def test_a_far_lossy_path_gets_bbr():
    verdict = choose(window(FAR_LOSSY), "lb_delay", EVERYTHING)
    assert verdict.algorithm == "bbr"
    assert verdict.reason == "min_rtt 40 ms, 5.15% retransmitted (long and lossy) → bbr"


def test_cross_traffic_is_named_and_lb_delay_competes():
    verdict = choose(window(NEAR_WITH_CUBIC), "lb_delay", EVERYTHING)
    assert verdict.algorithm == "lb_delay"
    assert "a standing queue of 27.1 ms" in verdict.reason and "compete mode" in verdict.reason


def test_loss_beside_a_standing_queue_is_congestion_not_bbrs():
    verdict = choose(window(FAR_WITH_CUBIC), "lb_delay", EVERYTHING)
    assert verdict.algorithm == "lb_delay" and "2.00% retransmitted" in verdict.reason
    assert "standing queue of 44.0 ms" in verdict.reason


def test_loss_is_counted_in_the_window_or_over_lives_when_connections_changed():
    churned = [(2, 40000, 40100, 200, 9000, 0), (1, 40000, 40100, 30, 1000, 0)]
    verdict = choose(window(churned), "lb_delay", EVERYTHING)
    assert "3.00% retransmitted" in verdict.reason and verdict.algorithm == "bbr"


def test_a_long_clean_path_is_not_bbrs():
    assert choose(window(FAR_CLEAN), "cubic", EVERYTHING).algorithm == "lb_delay"


def test_dctcp_only_where_ce_marks_were_delivered_and_the_kernel_has_it():
    assert choose(window(DATACENTRE_CE), "lb_delay", EVERYTHING).algorithm == "dctcp"
    unmarked = [row[:5] + (0,) for row in DATACENTRE_CE]       # ECN negotiated is not enough
    assert choose(window(unmarked), "lb_delay", EVERYTHING).algorithm == "lb_delay"
    assert choose(window(DATACENTRE_CE), "lb_delay", EVERYTHING - {"dctcp"}).algorithm == "lb_delay"


def test_without_our_bpf_algorithms_cubic_stands_in():
    plain = {"reno", "cubic"}
    assert initial(plain) == "cubic" and initial(EVERYTHING) == "lb_delay"
    assert choose(window(NEAR), "cubic", plain).algorithm == "cubic"
    assert choose(window(FAR_LOSSY), "cubic", plain).algorithm == "cubic"     # no bbr here


def test_no_connection_keeps_the_current_choice_and_the_window_forgets():
    assert choose(window([(0, 0, 0, 0, 0, 0)] * 3), "bbr", EVERYTHING).reason == \
        "no connection sampled in 60 s: keeps bbr"
    w = window(FAR_LOSSY + [(0, 0, 0, 0, 0, 0)] * 10, seconds=5)   # lossy samples aged out
    assert choose(w, "bbr", EVERYTHING).algorithm == "bbr"
    assert all(s.connections == 0 for s in w.samples)


def counters(row) -> Counters:
    connections, min_rtt, srtt, retrans, segments, ce = row
    return Counters(0, 1, 0, 0, 0, tcp={"198.18.0.9:8000": {
        "connections": connections, "algorithms": ["lb_delay"], "cwnd": 10, "srtt_us": srtt,
        "srtt_max_us": srtt, "retransmits": retrans, "pacing_rate": 0, "capped": 0,
        "max_pacing_rate": 0, "segments": segments, "delivered_ce": ce, "min_rtt_us": min_rtt}})


def test_the_control_moves_a_backend_once_per_hold_and_only_auto_ones():
    state = State()
    state.publish([BackendState("198.18.0.9", 8000, 100, cc="lb_delay", cc_wanted="auto"),
                   BackendState("198.18.0.8", 8000, 100, cc="cubic", cc_wanted="cubic")])
    feed = [counters(FAR_LOSSY[0])]
    auto = AutoCongestion(AutoCcSettings(interval=Duration(1), window=Duration(5),
                                         hold=Duration(30)), state, lambda: feed,
                          lambda: EVERYTHING)
    for second in range(3):
        auto.observe(float(second), {"198.18.0.9:8000": {**feed[0].tcp["198.18.0.9:8000"]}})
    auto.judge(3.0)
    assert [s.cc for s in state.backends] == ["bbr", "cubic"]
    version = state.version
    for second, row in enumerate(NEAR, start=4):         # the path changes at once...
        auto.observe(float(second), counters(row).tcp)
    auto.judge(10.0)                                      # ...but the hold is 30 s
    assert state.version == version and state.backends[0].cc == "bbr"
    assert auto.describe()["198.18.0.9:8000"]["auto_reason"].endswith("→ lb_delay")
    auto.judge(34.0)
    assert state.backends[0].cc == "lb_delay" and "198.18.0.8:8000" not in auto.describe()


def test_a_reload_keeps_an_auto_backends_pick_and_a_fixed_one_is_taken_as_asked():
    config = parse("backends:\n  - {host: 198.18.0.9, port: 8000, congestion_control: auto}\n"
                   "  - {host: 198.18.0.8, port: 8000, congestion_control: reno}\n")
    before = [BackendState("198.18.0.9", 8000, 100, cc="bbr", cc_wanted="auto"),
              BackendState("198.18.0.8", 8000, 100, cc="cubic", cc_wanted="cubic")]
    after = states_of(config, before)
    assert [(s.cc_wanted, s.cc) for s in after] == [("auto", "bbr"), ("reno", "reno")]
