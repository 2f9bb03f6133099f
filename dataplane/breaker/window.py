"""The last N calls of one backend, counted as they go: failures, slow calls,
and failures in a row. O(1) per call; a bytearray ring, no objects per call."""

from __future__ import annotations

FAILED, SLOW = 1, 2


class CallWindow:
    __slots__ = ("size", "marks", "at", "calls", "failures", "slow", "in_a_row")

    def __init__(self, size: int) -> None:
        self.size = size
        self.marks = bytearray(size)   # FAILED | SLOW bits per call, oldest overwritten
        self.at = 0                    # where the next call goes
        self.calls = self.failures = self.slow = self.in_a_row = 0

    def add(self, failed: bool, slow: bool) -> None:
        mark = (FAILED if failed else 0) | (SLOW if slow else 0)
        if self.calls == self.size:
            old = self.marks[self.at]
            self.failures -= old & FAILED
            self.slow -= (old & SLOW) >> 1
        else:
            self.calls += 1
        self.marks[self.at] = mark
        self.at = (self.at + 1) % self.size
        self.failures += failed
        self.slow += slow
        self.in_a_row = self.in_a_row + 1 if failed else 0

    def clear(self) -> None:
        self.at = self.calls = self.failures = self.slow = self.in_a_row = 0
