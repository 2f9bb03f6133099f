"""Congestion control as the control process sees it: which algorithm is in
effect for each backend, the BPF algorithms' lifecycle, and what ``lbctl cc``
shows.

A backend may ask for a kernel algorithm (tcp_available_congestion_control),
one of ours from bpf/ or ``pacer``. A BPF one that is not registered (BPF not
usable here, or switched off) is replaced by the pacer; the start-up log says
once which path is active and why.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog

from ..channel.messages import BackendState, Counters
from ..config import Config, congestion_algorithms
from ..congestion.auto_rule import initial
from ..kernel.bpf_cc import ALGORITHMS, BpfAlgorithms
from ..kernel.tcp_info import kernel_algorithms, module_algorithms

log = structlog.get_logger("l7lb.congestion")
PACER = "pacer"
AUTO = "auto"
OWNER_CHECK = 1.0     # seconds between tries to own the BPF algorithms another balancer owns


class Congestion:
    def __init__(self, config: Config) -> None:
        self.settings = config.congestion
        self.bpf = BpfAlgorithms(config.congestion.bpf == "auto", config.congestion.tunables)

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Register ours, or use another balancer's (and, given ``loop``, take
        them over once it has gone: the process an upgrade replaced)."""
        self.bpf.start()
        if self.bpf.usable():
            log.info("congestion control: BPF algorithms in use", algorithms=list(ALGORITHMS),
                     owner=self.bpf.owner)
            if not self.bpf.owner and loop is not None:
                loop.call_later(OWNER_CHECK, self._take_over, loop)
        else:
            log.warning("congestion control: BPF not in use; backends asking for "
                        f"{' or '.join(ALGORITHMS)} get the pacer", reason=self.bpf.reason)

    def _take_over(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.bpf.take_over() and self.bpf.reason is None:
            loop.call_later(OWNER_CHECK, self._take_over, loop)

    def stop(self) -> None:
        self.bpf.stop()

    @staticmethod
    def effective(requested: str | None) -> str:
        """The algorithm a backend asking for ``requested`` gets now (for
        ``auto``, the first choice: control/cc_auto.py moves it later)."""
        if not requested:
            return ""
        if requested == AUTO:
            return initial(available())
        if requested in ALGORITHMS and requested not in kernel_algorithms():
            return PACER
        return requested

    def describe(self, states: list[BackendState], samples: dict[str, dict[str, Any]],
                 auto: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``lbctl cc``'s answer; ``auto``: the auto verdicts by backend key."""
        return {
            "available": congestion_algorithms(), "bpf": self.bpf.describe(),
            "pacer": msgspec.to_builtins(self.settings.pacer, enc_hook=float),
            "backends": [{"name": f"{s.host}:{s.port}", "requested": s.cc_wanted or None,
                          "in_effect": s.cc or None, "client_side": s.client_side,
                          **auto.get(f"{s.host}:{s.port}", {}),
                          **samples.get(f"{s.host}:{s.port}", {})} for s in states]}


def available() -> set[str]:
    """What ``auto`` may pick: the kernel's algorithms (ours once registered)
    and its modules."""
    return set(kernel_algorithms()) | set(module_algorithms())


def merge_samples(reports: list[Counters]) -> dict[str, dict[str, Any]]:
    """Per-backend TCP_INFO figures of all workers: their sums added up, then
    made means (max_pacing_rate over the capped connections only)."""
    totals: dict[str, dict[str, Any]] = {}
    for report in reports:
        for name, s in report.tcp.items():
            t = totals.setdefault(name, {"algorithms": set(), "srtt_max_us": 0,
                                         "min_rtt_us": s["min_rtt_us"]})
            t["algorithms"].update(s["algorithms"])
            t["srtt_max_us"] = max(t["srtt_max_us"], s["srtt_max_us"])
            t["min_rtt_us"] = min(t["min_rtt_us"], s["min_rtt_us"])
            for key in ("connections", "cwnd", "srtt_us", "retransmits", "pacing_rate",
                        "capped", "max_pacing_rate", "segments", "delivered_ce"):
                t[key] = t.get(key, 0) + s[key]
    for t in totals.values():
        n, capped = t["connections"], t.pop("capped")
        t["algorithms"] = sorted(t["algorithms"])
        for key in ("cwnd", "srtt_us", "pacing_rate"):
            t[key] //= n
        t["max_pacing_rate"] = t["max_pacing_rate"] // capped if capped else None
    return totals
