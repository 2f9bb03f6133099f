"""Per-client-address counts shared by the workers, in bounded memory.

Each address hashes to two of ``BUCKETS`` buckets; a count is the smaller of
its two buckets (a count-min sketch), so it can only be over-estimated, by
other addresses that share both buckets. Each worker writes only its own row
(connections open now; requests in the current and the previous second), so
no two processes ever write the same word, and a reader sums a bucket over
the rows. Plain memory, no I/O: the buffer is an anonymous shared mapping the
control process makes before forking (``shared_buffer``), or any bytearray.
"""

from __future__ import annotations

import mmap

BUCKETS = 1 << 16
_MASK = BUCKETS - 1
# Per worker row: connections[BUCKETS], then two request windows (even and
# odd seconds) of BUCKETS each, then the second each window holds (2 words).
_ROW_WORDS = 3 * BUCKETS + 2
_WORD = 4           # unsigned 32-bit counters (the stamps: monotonic seconds)
_ZEROS = memoryview(bytes(BUCKETS * _WORD)).cast("I")


def buffer_size(workers: int) -> int:
    return workers * _ROW_WORDS * _WORD


def shared_buffer(workers: int) -> mmap.mmap:
    """Zeroed memory that forked workers share (MAP_SHARED | MAP_ANONYMOUS)."""
    return mmap.mmap(-1, buffer_size(workers))


def positions(address: str) -> tuple[int, int]:
    """The address's two buckets (the hash seed is the same in every forked worker)."""
    h = hash(address)
    return h & _MASK, (h >> 24) & _MASK


class ClientCounts:
    """One worker's view: it writes row ``slot``, reads all ``workers`` rows."""

    def __init__(self, buffer: mmap.mmap, workers: int, slot: int) -> None:
        words = memoryview(buffer).cast("I")
        self.rows = [words[w * _ROW_WORDS:(w + 1) * _ROW_WORDS] for w in range(workers)]
        self.mine = self.rows[slot]
        for start in range(0, 3 * BUCKETS, BUCKETS):     # a replaced worker's row starts empty
            self.mine[start:start + BUCKETS] = _ZEROS
        self.mine[3 * BUCKETS] = self.mine[3 * BUCKETS + 1] = 0

    # -- connections open now --------------------------------------------
    def open_connections(self, where: tuple[int, int]) -> int:
        a, b = where
        return min(sum(row[a] for row in self.rows), sum(row[b] for row in self.rows))

    def opened(self, where: tuple[int, int]) -> None:
        a, b = where
        self.mine[a] += 1
        self.mine[b] += 1

    def closed(self, where: tuple[int, int]) -> None:
        a, b = where
        mine = self.mine
        mine[a] -= 1
        mine[b] -= 1

    # -- requests per second ---------------------------------------------
    def rate(self, where: tuple[int, int], now: float) -> float:
        """Requests in the last second, estimated as the current second's plus
        the previous second's share that still overlaps it."""
        second = int(now)
        parity = second & 1
        current, previous = BUCKETS * (1 + parity), BUCKETS * (2 - parity)
        current_stamp, previous_stamp = 3 * BUCKETS + parity, 3 * BUCKETS + 1 - parity
        a, b = where
        now_a = now_b = before_a = before_b = 0
        for row in self.rows:
            if row[current_stamp] == second:
                now_a += row[current + a]
                now_b += row[current + b]
            if row[previous_stamp] == second - 1:
                before_a += row[previous + a]
                before_b += row[previous + b]
        overlap = 1.0 - (now - second)
        return min(now_a + overlap * before_a, now_b + overlap * before_b)

    def requested(self, where: tuple[int, int], now: float) -> None:
        second = int(now)
        parity = second & 1
        start, stamp, mine = BUCKETS * (1 + parity), 3 * BUCKETS + parity, self.mine
        if mine[stamp] != second:      # this window last held second - 2: start it again
            mine[start:start + BUCKETS] = _ZEROS
            mine[stamp] = second
        mine[start + where[0]] += 1
        mine[start + where[1]] += 1
