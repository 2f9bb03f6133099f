"""The pacer's AIMD rule on TCP_INFO samples: grow while clean, cut on loss or
queueing, hold when idle, stay within bounds."""

from __future__ import annotations

from dataplane.config import PacerSettings, Rate
from dataplane.kernel.pacer import Flow, Pacer
from dataplane.kernel.tcp_info import TcpSample

SETTINGS = PacerSettings(start_rate=Rate(80e6), min_rate=Rate(8e6), max_rate=Rate(160e6),
                         increase=Rate(8e6), decrease=0.5, rtt_tolerance=1.0)


def info(rtt_us: int = 100, retrans: int = 0, acked: int = 0) -> TcpSample:
    return TcpSample(rtt_us, 100, 10, retrans, 0, 0, acked)


def run(samples: list[TcpSample], queued: bool = False) -> list[int]:
    pacer, flow = Pacer(SETTINGS), Flow(SETTINGS.start_rate.bytes_per_second)
    rates = []
    for sample in samples:
        pacer._adjust(flow, sample, queued)
        rates.append(flow.rate)
    return rates


def test_clean_intervals_add_the_step_up_to_max_rate():
    rates = run([info(acked=i * 1000) for i in range(1, 15)])
    assert rates[:3] == [11_000_000, 12_000_000, 13_000_000]
    assert rates[-1] == 20_000_000


def test_a_retransmit_halves_and_min_rate_is_the_floor():
    rates = run([info(acked=1000, retrans=1), info(acked=2000, retrans=2),
                 info(acked=3000, retrans=3), info(acked=4000, retrans=9)])
    assert rates == [5_000_000, 2_500_000, 1_250_000, 1_000_000]


def test_a_queue_on_the_path_cuts_every_moving_connection():
    assert run([info(acked=1000)], queued=True) == [5_000_000]
    assert run([info(acked=0)], queued=True) == [10_000_000]      # idle: unchanged


def test_an_idle_interval_changes_nothing():
    assert run([info(acked=1000), info(acked=1000), info(acked=1000)]) == [11_000_000] * 3
