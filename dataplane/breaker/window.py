"""The last N calls of one backend, counted as they go: failures, slow calls,
and failures in a row. A worker adds calls one at a time, O(1) each (a
bytearray ring, no objects per call); the control process adds a worker's
calls a batch at a time, counted in C (``extend``)."""

from __future__ import annotations

import re

FAILED, SLOW = 1, 2
_FAILURE_RUNS = re.compile(rb"[\x01\x03]+")    # marks with the FAILED bit, in a row


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

    def extend(self, marks: bytes) -> int:
        """Calls in the order they ended, one mark each; returns the longest run
        of failures in a row among them (a run they continue counts whole)."""
        if not marks:
            return 0
        ordered = bytes(self.marks[self.at:self.calls] + self.marks[:self.at]) \
            if self.calls == self.size else bytes(self.marks[:self.calls])
        recent = (ordered + marks)[-self.size:]
        self.marks[:len(recent)] = recent
        self.calls = len(recent)
        self.at = self.calls % self.size
        self.failures = recent.count(FAILED) + recent.count(FAILED | SLOW)
        self.slow = recent.count(SLOW) + recent.count(FAILED | SLOW)
        runs = [len(run) for run in _FAILURE_RUNS.findall(marks)]
        carried = self.in_a_row + runs[0] if runs and marks[0] & FAILED else 0
        tail = len(marks) - len(marks.rstrip(b"\x01\x03"))
        self.in_a_row = self.in_a_row + tail if tail == len(marks) else tail
        return max([carried, *runs])

    def clear(self) -> None:
        self.at = self.calls = self.failures = self.slow = self.in_a_row = 0
