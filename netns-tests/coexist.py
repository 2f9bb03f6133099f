"""One congestion-control coexistence run: the balancer's upload to a backend
(the algorithm under test) shares a tbf bottleneck with direct flows from
another host (the cross traffic: cubic or bbr), which join after ``alone``
seconds and leave ``together`` seconds later. Used by netns-tests/
test_cc_coexist.py and scripts/bench-cc-coexist.

Samples every ``SAMPLE`` s: bytes acknowledged, smoothed and minimum RTT and
retransmits of the upstream connection (ss in the balancer's namespace) and of
the cross flows (TCP_INFO of their sockets)."""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from conftest import streaming_upload
from topology import Topology

from dataplane.kernel.tcp_info import sample, set_algorithm

SAMPLE = 0.1
WINDOW = 0.5          # seconds over which a share is judged while switching
FAIR = 0.35           # the share that counts as "holding its own"
LOW_DELAY_MS = 2.0    # srtt within this of the path's minimum is "low delay" again


@dataclass
class Point:
    t: float
    ours_acked: int
    ours_srtt_ms: float
    ours_min_ms: float
    ours_retrans: int
    cross_acked: int


@dataclass
class Run:
    alone: float
    together: float
    after: float
    points: list[Point] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[Point]:
        return [p for p in self.points if start <= p.t <= end]

    def rate(self, points: list[Point], cross: bool = False) -> float:
        """Mbit/s acknowledged between the first and last point."""
        if len(points) < 2 or points[-1].t <= points[0].t:
            return 0.0
        a, b = points[0], points[-1]
        moved = (b.cross_acked - a.cross_acked) if cross else (b.ours_acked - a.ours_acked)
        return moved * 8 / (b.t - a.t) / 1e6

    def share(self, start: float, end: float) -> float:
        span = self.between(start, end)
        ours, cross = self.rate(span), self.rate(span, cross=True)
        return ours / (ours + cross) if ours + cross else 0.0

    def summary(self) -> dict:
        join, leave = self.alone, self.alone + self.together
        settled = self.between(1.0, join)        # past slow start
        srtt = [p.ours_srtt_ms for p in settled]
        base = min((p.ours_min_ms for p in self.points if p.ours_min_ms), default=0.0)
        shared = self.between(join, leave)
        shared_srtt = [p.ours_srtt_ms for p in shared]
        return {
            "alone_mbit_s": round(self.rate(settled), 1),
            "alone_rtt_p50_ms": round(statistics.median(srtt), 2) if srtt else None,
            "alone_rtt_p99_ms": round(percentile(srtt, 0.99), 2) if srtt else None,
            "base_rtt_ms": round(base, 2),
            "share": round(self.share(join, leave), 3),
            "together_rtt_p50_ms": round(statistics.median(shared_srtt), 2) if shared_srtt else None,
            "together_rtt_p99_ms": round(percentile(shared_srtt, 0.99), 2) if shared_srtt else None,
            "retransmits": self.points[-1].ours_retrans - self.points[0].ours_retrans
            if self.points else 0,
            "to_share_s": self.time_to_share(join),
            "to_low_delay_s": self.time_to_low_delay(leave, base),
        }

    def time_to_share(self, join: float) -> float | None:
        """From the join, when our share over each following WINDOW stays at
        FAIR or more for the next 2 s (None: not within the run together)."""
        end = self.alone + self.together
        t = join
        while t + 2 <= end:
            windows = [self.share(s, s + WINDOW) for s in frange(t, t + 2, WINDOW)]
            if min(windows) >= FAIR:
                return round(t - join, 2)
            t += SAMPLE
        return None

    def time_to_low_delay(self, leave: float, base: float) -> float | None:
        for p in self.between(leave, self.alone + self.together + self.after):
            if p.ours_srtt_ms <= base + LOW_DELAY_MS:
                return round(p.t - leave, 2)
        return None


def frange(start: float, end: float, step: float) -> list[float]:
    return [start + i * step for i in range(int((end - start) / step + 1e-9))]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(text: str) -> float:
    return float(text.split("/")[0])


@contextmanager
def cross_traffic(topo: Topology, host: str, to: str, algorithm: str, flows: int):
    """``flows`` uploads from ``host`` straight to ``to``'s backend on port
    8000, each with ``algorithm``; yields their sockets."""
    stop = threading.Event()
    socks, threads = [], []
    chunk = b"x" * 65536
    for _ in range(flows):
        sock = topo.socket(host)
        set_algorithm(sock, algorithm)
        sock.settimeout(10)
        sock.connect((topo.hosts[to], 8000))
        sock.sendall(b"POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n")
        socks.append(sock)

    def send(sock) -> None:
        while not stop.is_set():
            try:
                sock.sendall(chunk)
            except OSError:
                return

    for sock in socks:
        threads.append(threading.Thread(target=send, args=(sock,), daemon=True))
        threads[-1].start()
    try:
        yield socks
    finally:
        stop.set()
        for sock in socks:
            sock.close()
        for thread in threads:
            thread.join(timeout=5)


def measure(topo: Topology, backend: str, cross_host: str, cross: str, flows: int,
            alone: float, together: float, after: float) -> Run:
    """The balancer uploads to ``backend`` throughout; ``flows`` cross flows
    with algorithm ``cross`` run from ``alone`` to ``alone + together``."""
    run = Run(alone, together, after)
    cross_acked = 0
    deadline = time.monotonic() + 3       # the last run's upload drains first...
    while topo.tcp_sockets("lb", backend, 8000) and time.monotonic() < deadline:
        time.sleep(0.1)
    # ...or is cut: on a slow path its megabytes in buffers would share the
    # bottleneck for many seconds more.
    topo.run("lb", ["ss", "-K", "dst", f"{topo.hosts[backend]}:8000"])
    with streaming_upload(topo, alone + together + after + 30), ExitStack() as crossing:
        started = time.monotonic()
        socks: list = []
        while (t := time.monotonic() - started) < alone + together + after:
            if alone <= t < alone + together and not socks:
                socks = crossing.enter_context(cross_traffic(topo, cross_host, backend,
                                                             cross, flows))
            elif t >= alone + together and socks:
                crossing.close()                  # the cross flows leave; their count stays
                socks = []
            infos = [info for info in map(sample, socks) if info]
            if infos:
                cross_acked = sum(info.bytes_acked for info in infos)
            upstream = topo.tcp_sockets("lb", backend, 8000)
            if upstream and "rtt" in upstream[0]:
                u = upstream[0]
                run.points.append(Point(
                    t, int(u.get("bytes_acked", 0)), ms(u["rtt"]), float(u.get("minrtt", 0)),
                    int(u.get("retrans", "0/0").split("/")[-1]), cross_acked))
            time.sleep(max(0.0, SAMPLE - (time.monotonic() - started - t)))
    return run
