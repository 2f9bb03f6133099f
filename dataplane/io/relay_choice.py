"""``relay: auto`` in TCP mode: which of splice and copy moves one direction of
a stream faster, measured on that stream (no I/O; the pump passes ``now``).

Which engine wins depends on the machine: splice spends the least CPU in the
proxy, but on a host whose endpoints share a CPU, pages passed along by
splice cost them more to read than freshly written ones, and copy wins (README,
Speed). So a bulk direction runs each engine for a window in turn and keeps
the faster; short or slow streams never leave splice.
"""

from __future__ import annotations

SPLICE, COPY = "splice", "copy"

WARM_BYTES = 8 << 20        # a direction is tried only after this many bytes
WINDOW = 0.25               # seconds per window of a trial
MIN_RATE = 20 << 20         # bytes/s: a slower first window is not bulk, no trial
MARGIN = 1.15               # copy is kept only when this much faster than splice
RETRY = 10.0                # seconds between trials: the winner can change with load

# Windows in ABBA order: a machine whose speed drifts during the trial weighs
# on both engines alike.
TRIAL = (SPLICE, COPY, COPY, SPLICE)


class RelayChoice:
    """One direction's engine. ``engine_for(now, moved)`` is asked between
    reads, with no bytes held, and returns the engine for the next ones."""

    __slots__ = ("engine", "trials", "_step", "_since", "_mark", "_next", "_bytes",
                 "_seconds")

    def __init__(self) -> None:
        self.engine = SPLICE
        self.trials = 0          # trials completed, for the access line
        self._step = -1          # the window under way, -1 between trials
        self._since = self._next = 0.0
        self._mark = 0
        self._bytes = {SPLICE: 0, COPY: 0}
        self._seconds = {SPLICE: 0.0, COPY: 0.0}

    def engine_for(self, now: float, moved: int) -> str:
        if self._step < 0:
            if moved >= WARM_BYTES and now >= self._next:
                self._bytes = {SPLICE: 0, COPY: 0}
                self._seconds = {SPLICE: 0.0, COPY: 0.0}
                self._enter(0, now, moved)
        elif now - self._since >= WINDOW:
            self._bytes[self.engine] += moved - self._mark
            self._seconds[self.engine] += now - self._since
            if self._step == 0 and self._rate(SPLICE) < MIN_RATE:
                self._settle(SPLICE, now)                  # not bulk now
            elif self._step + 1 < len(TRIAL):
                self._enter(self._step + 1, now, moved)
            else:
                self.trials += 1
                faster = self._rate(COPY) > self._rate(SPLICE) * MARGIN
                self._settle(COPY if faster else SPLICE, now)
        return self.engine

    def _enter(self, step: int, now: float, moved: int) -> None:
        self._step, self.engine, self._since, self._mark = step, TRIAL[step], now, moved

    def _settle(self, engine: str, now: float) -> None:
        self._step, self.engine, self._next = -1, engine, now + RETRY

    def _rate(self, engine: str) -> float:
        return self._bytes[engine] / self._seconds[engine]
