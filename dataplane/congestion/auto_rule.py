"""``congestion_control: auto``: which algorithm suits a backend's path, from
what TCP_INFO of its upstream connections said over the last window.
Sans-IO: the control process (control/cc_auto.py) feeds it a sample a second
and asks for a verdict at a bounded rate.

The rule, first match wins (docs/congestion.md has it with its reasons):

1. No sample in the window (no open connection): keep the current choice.
2. CE marks delivered on the path (``tcpi_delivered_ce`` of the open
   connections above 0, not merely ECN negotiated) and min RTT under
   DC_RTT_MS: dctcp, where the kernel has it.
3. A standing queue (median srtt above min RTT by more than QUEUE_MS and more
   than min RTT itself): other traffic keeps the bottleneck full, and its
   losses are congestion: lb_delay, whose compete mode shares as cubic does.
4. Min RTT of WAN_RTT_MS or more and more than LOSSY of the segments sent in
   the window retransmitted, with no standing queue (loss that is not
   congestion): bbr.
5. Otherwise lb_delay: low delay alone.

Without our BPF algorithms cubic stands in for lb_delay, and for bbr
where the kernel has none.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

DC_RTT_MS = 5.0
WAN_RTT_MS = 20.0
LOSSY = 0.005            # share of segments retransmitted
QUEUE_MS = 5.0           # srtt above min RTT by this (and by min RTT itself): a standing queue


@dataclass(frozen=True)
class PathSample:
    """One second of a backend's upstream connections, summed over workers."""
    at: float
    connections: int
    min_rtt_us: int          # the smallest kernel minimum RTT among them
    srtt_us: int             # their mean smoothed RTT
    retransmits: int         # segments retransmitted over their lives
    segments: int            # segments sent over their lives
    delivered_ce: int        # segments delivered with a CE mark, over their lives


@dataclass(frozen=True)
class Verdict:
    algorithm: str
    reason: str


class PathWindow:
    """The samples of the last ``window`` seconds of one backend."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.samples: deque[PathSample] = deque()

    def add(self, sample: PathSample) -> None:
        self.samples.append(sample)
        while self.samples and sample.at - self.samples[0].at > self.window:
            self.samples.popleft()


def choose(window: PathWindow, current: str, available: set[str]) -> Verdict:
    """The algorithm for new connections to the backend, and why."""
    samples = [s for s in window.samples if s.connections]
    if not samples:
        return Verdict(current, f"no connection sampled in {window.window:g} s: keeps {current}")
    min_rtt = min(s.min_rtt_us for s in samples) / 1000
    lost = retransmitted(samples)
    marked = samples[-1].delivered_ce
    seen = f"min_rtt {min_rtt:.3g} ms, {lost:.2%} retransmitted"
    if marked > 0 and min_rtt < DC_RTT_MS and "dctcp" in available:
        return Verdict("dctcp", f"{seen}, {marked} CE-marked segments delivered → dctcp")
    ours = fallback("lb_delay", available)
    queue = statistics.median(s.srtt_us for s in samples) / 1000 - min_rtt
    if queue > max(QUEUE_MS, min_rtt):
        return Verdict(ours, f"{seen}, a standing queue of {queue:.1f} ms (other traffic "
                       f"shares the path) → {ours}" + (" in compete mode" if ours == "lb_delay"
                                                       else ""))
    if min_rtt >= WAN_RTT_MS and lost > LOSSY:
        wan = fallback("bbr", available)
        return Verdict(wan, f"{seen} (long and lossy) → {wan}")
    return Verdict(ours, f"{seen} → {ours}")


def retransmitted(samples: list[PathSample]) -> float:
    """The share of segments retransmitted in the window; over the open
    connections' lives when the window has one sample or they changed."""
    first, last = samples[0], samples[-1]
    sent, again = last.segments - first.segments, last.retransmits - first.retransmits
    if sent > 0 and again >= 0:
        return again / sent
    return last.retransmits / last.segments if last.segments else 0.0


def fallback(wanted: str, available: set[str]) -> str:
    """``wanted``, or cubic when this kernel or balancer lacks it."""
    return wanted if wanted in available else "cubic"


def initial(available: set[str]) -> str:
    """Before any sample: lb_delay (or cubic without our BPF algorithms)."""
    return fallback("lb_delay", available)
