"""``congestion_control: auto`` at work: once a second each auto backend's
TCP_INFO figures (as the workers last reported them) go into its window;
every ``congestion.auto.interval`` the rule (congestion/auto_rule.py) gives a
verdict, and a backend whose verdict differs from what it uses moves to it,
at most once per ``congestion.auto.hold``. The move is a new state snapshot
like ``lbctl backend set``'s, except that pooled connections keep the
algorithm they were opened with (upstream/cluster.py); new ones take the new
one. In a fleet each member picks for its own paths.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import msgspec
import structlog

from ..channel.messages import BackendState, Counters
from ..config.schema import AutoCcSettings
from ..congestion.auto_rule import PathSample, PathWindow, Verdict, choose
from .congestion import AUTO, available, merge_samples
from .state import State

log = structlog.get_logger("l7lb.congestion")
SAMPLE_EVERY = 1.0


class AutoCongestion:
    def __init__(self, settings: AutoCcSettings, state: State,
                 reports: Callable[[], list[Counters]],
                 offered: Callable[[], set[str]] = available) -> None:
        self.settings, self.state, self.reports, self.offered = settings, state, reports, offered
        self.windows: dict[str, PathWindow] = {}
        self.verdicts: dict[str, tuple[Verdict, float]] = {}   # with when it was given
        self.moved: dict[str, float] = {}                       # when a backend last moved
        self.judged = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._timer = loop.call_later(SAMPLE_EVERY, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        now = time.monotonic()
        self.observe(now, merge_samples(self.reports()))
        if now - self.judged >= self.settings.interval:
            self.judged = now
            self.judge(now)
        self._timer = self.loop.call_later(SAMPLE_EVERY, self._tick)

    def observe(self, now: float, samples: dict[str, dict[str, Any]]) -> None:
        auto = {key(s) for s in self.state.backends if s.cc_wanted == AUTO}
        for gone in set(self.windows) - auto:
            del self.windows[gone]
            self.verdicts.pop(gone, None)
        for name in auto:
            window = self.windows.setdefault(name, PathWindow(self.settings.window))
            window.add(path_sample(now, samples.get(name)))

    def judge(self, now: float) -> None:
        offered = self.offered()
        moves = {}
        for state in self.state.backends:
            name = key(state)
            if name not in self.windows:
                continue
            verdict = choose(self.windows[name], state.cc, offered)
            self.verdicts[name] = (verdict, time.time())
            if verdict.algorithm != state.cc and \
                    now - self.moved.get(name, -self.settings.hold) >= self.settings.hold:
                moves[name] = verdict
        if not moves:
            return
        for name, verdict in moves.items():
            self.moved[name] = now
            log.info("congestion control auto choice", backend=name,
                     algorithm=verdict.algorithm, reason=verdict.reason)
        self.state.publish([msgspec.structs.replace(s, cc=moves[key(s)].algorithm)
                            if key(s) in moves else s for s in self.state.backends])

    def describe(self) -> dict[str, dict[str, Any]]:
        """Per auto backend: the last verdict's reason and when it was given."""
        return {name: {"auto_reason": verdict.reason, "auto_at": round(at, 3)}
                for name, (verdict, at) in self.verdicts.items()}


def key(state: BackendState) -> str:
    """HOST:PORT, as the workers' TCP_INFO figures name a backend."""
    return f"{state.host}:{state.port}"


def path_sample(now: float, merged: dict[str, Any] | None) -> PathSample:
    if not merged:
        return PathSample(now, 0, 0, 0, 0, 0, 0)
    return PathSample(now, merged["connections"], merged["min_rtt_us"], merged["srtt_us"],
                      merged["retransmits"], merged["segments"], merged["delivered_ce"])
