"""Congestion control as the control process sees it: which algorithm is in
effect for each backend, the BPF algorithms' lifecycle, and what ``lbctl cc``
shows.

A backend may ask for a kernel algorithm (tcp_available_congestion_control),
one of ours from bpf/ or ``pacer``. A BPF one that is not registered (BPF not
usable here, or switched off) is replaced by the pacer; the start-up log says
once which path is active and why.
"""

from __future__ import annotations

import structlog

from .bpf_cc import ALGORITHMS, BpfAlgorithms
from .config import Config, congestion_algorithms
from .tcp_info import kernel_algorithms

log = structlog.get_logger("l7lb.congestion")
PACER = "pacer"


class Congestion:
    def __init__(self, config: Config) -> None:
        self.settings = config.congestion
        self.bpf = BpfAlgorithms(config.congestion.bpf == "auto", config.congestion.tunables)

    def start(self) -> None:
        self.bpf.start()
        if set(ALGORITHMS) <= set(kernel_algorithms()):
            log.info("congestion control: BPF algorithms in use", algorithms=list(ALGORITHMS),
                     owner=self.bpf.owner)
        else:
            log.warning("congestion control: BPF not in use; backends asking for "
                        f"{' or '.join(ALGORITHMS)} get the pacer", reason=self.bpf.reason)

    def stop(self) -> None:
        self.bpf.stop()

    @staticmethod
    def effective(requested: str | None) -> str:
        """The algorithm a backend asking for ``requested`` gets now."""
        if not requested:
            return ""
        if requested in ALGORITHMS and requested not in kernel_algorithms():
            return PACER
        return requested

    @staticmethod
    def check(requested: str) -> None:
        """ValueError unless ``requested`` can be asked for."""
        known = congestion_algorithms()
        if requested not in known:
            raise ValueError(f"unknown algorithm {requested!r}; available: {', '.join(known)}")

    def describe(self, states: list, samples: dict[str, dict]) -> dict:
        pacer = self.settings.pacer
        return {
            "available": congestion_algorithms(), "bpf": self.bpf.describe(),
            "pacer": {"interval_s": pacer.interval, "start_rate": pacer.start_rate,
                      "min_rate": pacer.min_rate, "max_rate": pacer.max_rate,
                      "increase": pacer.increase, "decrease": pacer.decrease,
                      "rtt_tolerance": pacer.rtt_tolerance},
            "backends": [{"name": f"{s.host}:{s.port}", "requested": s.cc_wanted or None,
                          "in_effect": s.cc or None, "client_side": s.client_side,
                          **samples.get(f"{s.host}:{s.port}", {})} for s in states]}


def merge_samples(reports: list) -> dict[str, dict]:
    """Per-backend TCP_INFO summaries of all workers, combined."""
    merged: dict[str, dict] = {}
    for report in reports:
        for name, s in report.tcp.items():
            m = merged.get(name)
            if m is None:
                merged[name] = dict(s)
                continue
            n, k = m["connections"], s["connections"]
            for key in ("cwnd", "srtt_us", "pacing_rate"):
                m[key] = (m[key] * n + s[key] * k) // (n + k)
            if s["max_pacing_rate"] is not None:
                old = m["max_pacing_rate"]
                m["max_pacing_rate"] = s["max_pacing_rate"] if old is None else (
                    old + s["max_pacing_rate"]) // 2
            m["srtt_max_us"] = max(m["srtt_max_us"], s["srtt_max_us"])
            m["retransmits"] += s["retransmits"]
            m["algorithms"] = sorted(set(m["algorithms"]) | set(s["algorithms"]))
            m["connections"] = n + k
    return merged
