"""The last N calls of one backend: failures, slow calls, and failures in a
row, kept in a bytearray ring (no objects per call) and taken a batch of
one-byte marks at a time, counted in C (``extend``): by a worker when a bad
call comes or at its report, by the control process per report."""

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
