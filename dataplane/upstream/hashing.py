"""Consistent hashing tables, without I/O: a weighted ring with virtual nodes,
MaglevTable, and consistent hashing with bounded loads.

Keys and backend names are hashed with xxHash3-64 (the xxhash package):
stable across processes and machines, unlike Python's hash(). Every worker
and every balancer with the same backend set maps a key to the same backend.

Tables are built over every backend with a positive weight, whether it is up
or not. A backend that is down keeps its entries; a pick that lands on it
moves on (the ring to the next point, MaglevTable to a re-hashed slot), so a
backend going down or up moves only its own keys. Building is the slow part
(tens of milliseconds for 1000 backends) and happens once per change of the
backend set or weights; the caller swaps the new table in with one
assignment. Picking allocates nothing.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect
from typing import Callable, Iterator, Sequence

import xxhash

_hash = xxhash.xxh3_64_intdigest
MAGLEV_SIZE = 65537          # prime, per the Maglev paper's guidance (M >> N)
RING_POINTS_PER_BACKEND = 1024
RING_MAX = 8 * 1024 * 1024
BALANCE_FACTOR = 1.25
PROBES = 64                  # re-hashes tried before giving up on finding an up backend

Up = Callable[[int], bool]   # is the backend at this index available?


def key_hash(key: bytes) -> int:
    return _hash(key)


def _rehash(h: int) -> int:
    return _hash(h.to_bytes(8, "little"))


class HashRing:
    """Each backend owns points on a 64-bit circle in proportion to its weight;
    a key goes to the owner of the first point at or after its hash."""

    def __init__(self, names: Sequence[str], weights: Sequence[int],
                 size: int | None = None) -> None:
        """``size`` None: 1024 points for the lightest backend and more in
        proportion to weight (capped at RING_MAX in all), so with equal weights
        a backend's points do not depend on how many others there are and
        removing one moves only its keys. A ``size`` spreads that many points
        in all by weight: smaller tables, but every backend's share of points
        changes when the set does."""
        self.count = len(names)
        live = [w for w in weights if w > 0]
        total = sum(live)
        if not total:
            per_weight = 0.0
        elif size is None:
            per_weight = min(RING_POINTS_PER_BACKEND / min(live), RING_MAX / total)
        else:
            per_weight = min(size, RING_MAX) / total
        points: list[tuple[int, int]] = []
        for index, (name, weight) in enumerate(zip(names, weights)):
            if weight <= 0:
                continue
            prefix = name.encode() + b"#"
            for replica in range(max(1, round(per_weight * weight))):
                points.append((_hash(prefix + str(replica).encode()), index))
        points.sort()
        # Flat arrays: a bisection over a million points touches far fewer
        # cache lines than over a list of int objects (half the pick time).
        self.points = array("Q", [p for p, _ in points])
        self.owners = array("I", [i for _, i in points])

    def pick(self, h: int, up: Up) -> int | None:
        points = self.points
        if not points:
            return None
        n = len(points)
        start = bisect(points, h) % n
        owners = self.owners
        for step in range(n):                 # first point whose owner is up
            owner = owners[(start + step) % n]
            if up(owner):
                return owner
            if step > PROBES and step > 4 * self.count:
                break
        return None

    def walk(self, h: int) -> Iterator[int]:
        """Owners in ring order from the key's point (bounded-load overflow)."""
        points, owners = self.points, self.owners
        n = len(points)
        start = bisect(points, h) % n if n else 0
        for step in range(n):
            yield owners[(start + step) % n]


class MaglevTable:
    """The Maglev lookup table: each backend fills slots in the order of its
    own permutation of 0..M-1, taking turns in proportion to its weight."""

    def __init__(self, names: Sequence[str], weights: Sequence[int],
                 size: int = MAGLEV_SIZE) -> None:
        self.size = size
        live = [(i, n, w) for i, (n, w) in enumerate(zip(names, weights)) if w > 0]
        table = [-1] * size
        if live:
            self._fill(table, live, size)
        self.table = table

    @staticmethod
    def _fill(table: list[int], live: list[tuple[int, str, int]], size: int) -> None:
        heaviest = max(w for _, _, w in live)
        offsets, skips, nexts, shares, credits = [], [], [], [], []
        for _, name, weight in live:
            encoded = name.encode()
            offsets.append(_hash(encoded + b"/offset") % size)
            skips.append(_hash(encoded + b"/skip") % (size - 1) + 1)
            nexts.append(0)
            shares.append(weight / heaviest)
            credits.append(0.0)
        filled = 0
        while filled < size:
            for k, (index, _, _) in enumerate(live):
                credits[k] += shares[k]
                while credits[k] >= 1.0 and filled < size:
                    credits[k] -= 1.0
                    offset, skip, j = offsets[k], skips[k], nexts[k]
                    slot = (offset + j * skip) % size
                    while table[slot] >= 0:
                        j += 1
                        slot = (offset + j * skip) % size
                    nexts[k] = j + 1
                    table[slot] = index
                    filled += 1

    def pick(self, h: int, up: Up) -> int | None:
        table, size = self.table, self.size
        owner = table[h % size]
        if owner < 0:
            return None
        probes = 0
        while not up(owner):
            probes += 1
            if probes > PROBES:
                return None
            h = _rehash(h)
            owner = table[h % size]
        return owner


def bounded_pick(ring: HashRing, h: int, up: Up, load: Callable[[int], int],
                 weight: Callable[[int], int], in_flight: int, up_weight: int,
                 factor: float = BALANCE_FACTOR) -> int | None:
    """Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam):
    no backend takes more than ceil(factor x its weighted share) of the
    in-flight requests, counting the one being placed; overflow walks the ring.
    ``load`` and ``weight`` give a backend's figures by index; ``in_flight`` and
    ``up_weight`` are the totals over the backends that are up."""
    if up_weight <= 0:
        return None
    placed = in_flight + 1
    for owner in ring.walk(h):
        share = weight(owner)
        if share <= 0 or not up(owner):
            continue
        if load(owner) < math.ceil(factor * placed * share / up_weight):
            return owner
    return None
