"""The pure-Python AIMD pacer: congestion control for kernels or machines
where our BPF algorithms cannot run, or where ``pacer`` is chosen.

Every ``congestion.pacer.interval`` it samples TCP_INFO of each connection it
paces and moves that connection's SO_MAX_PACING_RATE cap: up by ``increase``
while the path looks clean, down by the factor ``decrease`` when it does not,
within [min_rate, max_rate]. A connection's interval is clean when none of its
segments was retransmitted and the path shows no queue. The connections ticked
together (one backend's) are judged as one path: it has a queue when their
median smoothed RTT exceeds the path's base RTT (the smallest of their kernel
minimum RTTs) by more than ``rtt_tolerance`` (a fraction) plus one millisecond
of jitter. Judging them together makes them rise and fall in step, which is
what lets AIMD converge to fair shares; judged alone, a slow connection's stale
smoothed RTT keeps it backing off while a fast one grows, and a connection
opened into a full queue takes that queue for the path. An interval in which
nothing was acknowledged leaves that connection's rate as it is.
"""

from __future__ import annotations

import socket
import statistics
import weakref
from typing import TYPE_CHECKING, Iterable

from .tcp_info import TcpSample, sample, set_pacing_cap

if TYPE_CHECKING:
    from ..config import PacerSettings

JITTER_US = 1000


class Flow:
    __slots__ = ("rate", "retrans", "acked")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.retrans = 0
        self.acked = 0


class Pacer:
    def __init__(self, settings: "PacerSettings") -> None:
        self.settings = settings
        self.start = settings.start_rate.bytes_per_second
        self.low = settings.min_rate.bytes_per_second
        self.high = settings.max_rate.bytes_per_second
        self.step = settings.increase.bytes_per_second
        self.flows: weakref.WeakKeyDictionary[socket.socket, Flow] = weakref.WeakKeyDictionary()

    def adopt(self, sock: socket.socket) -> None:
        """Pace a new connection, starting at ``start_rate``."""
        flow = self.flows[sock] = Flow(self.start)
        set_pacing_cap(sock, flow.rate)

    def tick(self, sockets: Iterable[socket.socket]) -> None:
        """One interval: adjust every paced connection among ``sockets``."""
        flows = self.flows
        paced = []
        for sock in sockets:
            flow = flows.get(sock)
            if flow is not None and sock.fileno() >= 0 and (now := sample(sock)) is not None:
                paced.append((sock, flow, now))
        if not paced:
            return
        base = min(now.min_rtt_us for _, _, now in paced)
        rtt = statistics.median_low([now.rtt_us for _, _, now in paced])
        queued = rtt > base * (1 + self.settings.rtt_tolerance) + JITTER_US
        for sock, flow, now in paced:
            if self._adjust(flow, now, queued):
                set_pacing_cap(sock, flow.rate)

    def _adjust(self, flow: Flow, now: TcpSample, queued: bool) -> bool:
        """Move the rate for one interval; True when it changed."""
        lost = now.total_retrans > flow.retrans
        moved = now.bytes_acked > flow.acked
        flow.retrans, flow.acked = now.total_retrans, now.bytes_acked
        if not (moved or lost):
            return False
        old = flow.rate
        if lost or queued:
            flow.rate = max(self.low, int(flow.rate * self.settings.decrease))
        else:
            flow.rate = min(self.high, flow.rate + self.step)
        return flow.rate != old
