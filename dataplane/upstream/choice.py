"""Choosing a host: ``balancer.algorithm`` and ``balancer.hash_key``.

- ``round_robin``: smooth weighted round robin (nginx's): each pick adds every
  backend's weight to its current weight, takes the largest and subtracts the
  total from the winner, so picks interleave in proportion to weight.
- ``random``: weighted random.
- ``least_request``: power of two choices: two weighted-random backends, the
  one with fewer in-flight requests per unit of weight wins.
- ``ring_hash``, ``maglev``, ``bounded_load``: consistent hashing of the
  request's key (hashing.py).

A host the cluster does not admit (``admits``: unresolved, weight 0, drain,
maint, down by health outside panic, or its breaker open with no trial
permit) is never picked, by any algorithm.
Hash tables are rebuilt when the host set or a weight changes, through
``build`` (a thread in the worker), and swapped in whole; a host that stops
being admitted keeps its table entries, so only its own keys move.
"""

from __future__ import annotations

import random
from bisect import bisect
from typing import Callable, Generic, TypeVar, cast

from . import hashing
from .host import Host

Admits = Callable[[Host], bool]
Build = Callable[[Callable[[], object], Callable[[object], None]], None]


def build_now(make: Callable[[], object], done: Callable[[object], None]) -> None:
    done(make())


class Choice:
    """Base: keeps the list of admitted candidates; subclasses pick.

    ``in_flight`` (requests or connections under way over all hosts) is kept
    by the cluster, which counts them."""

    hashed = False

    def __init__(self, backends: list[Host], admits: Admits, build: Build = build_now) -> None:
        self.backends = backends
        self.admits = admits
        self.build = build
        self.candidates: list[Host] = []
        self.total = 0
        self.in_flight = 0      # requests (HTTP) or connections (TCP) under way
        self.refresh()

    def refresh(self) -> None:
        """Call after any up/down or weight change."""
        self.candidates = [b for b in self.backends if self.admits(b)]
        self.total = sum(b.weight for b in self.candidates)

    def pick(self, key: bytes | None) -> Host | None:
        raise NotImplementedError

    def pick_other(self, key: bytes | None, tried: set[Host]) -> Host | None:
        """For a retry: a host not in ``tried``. Unhashed choices draw by weight
        among the rest; hashed ones override this with their own next host."""
        rest = [h for h in self.candidates if h not in tried]
        total = sum(h.weight for h in rest)
        if not total:
            return None
        point = random.randrange(total)
        for host in rest:
            point -= host.weight
            if point < 0:
                return host
        return rest[-1]


class RoundRobin(Choice):
    def refresh(self) -> None:
        """Candidates that stay keep their place in the rotation, whatever
        their new weights: restarting it at every change would hand the first
        picks to the first hosts each time, and a host of low weight would get
        nothing while weights change often (slow start ramps them each second).
        A host joins at 0; one leaving is reset."""
        candidates = [b for b in self.backends if self.admits(b)]
        staying = set(candidates).intersection(self.candidates)
        for backend in self.backends:
            if backend not in staying:
                backend.current_weight = 0
        self.candidates = candidates
        self.total = sum(b.weight for b in candidates)

    def pick(self, key: bytes | None = None) -> Host | None:
        best: Host | None = None
        best_weight = -1 << 62
        for backend in self.candidates:
            backend.current_weight += backend.weight
            if backend.current_weight > best_weight:
                best, best_weight = backend, backend.current_weight
        if best is not None:
            best.current_weight -= self.total
        return best


class Random(Choice):
    def refresh(self) -> None:
        super().refresh()
        running, self.cumulative = 0, []
        for backend in self.candidates:
            running += backend.weight
            self.cumulative.append(running)

    def _weighted(self) -> Host | None:
        if not self.total:
            return None
        return self.candidates[bisect(self.cumulative, random.randrange(self.total))]

    def pick(self, key: bytes | None = None) -> Host | None:
        return self._weighted()


class LeastRequest(Random):
    def pick(self, key: bytes | None = None) -> Host | None:
        first, second = self._weighted(), self._weighted()
        if first is None or second is None:
            return first
        # Fewer in-flight requests per unit of weight wins (cross-multiplied).
        return second if second.inflight * first.weight < first.inflight * second.weight \
            else first


Table = TypeVar("Table", hashing.HashRing, hashing.MaglevTable)


class _Hashed(Choice, Generic[Table]):
    """Common part of the consistent-hashing balancers: the table over all
    positive-weight backends, rebuilt (off the hot path) when it changes."""

    hashed = True

    def __init__(self, backends: list[Host], admits: Admits, build: Build = build_now,
                 size: int | None = None) -> None:
        self.size = size
        self.table: Table | None = None
        self.table_backends: list[Host] = []
        self.signature: tuple[tuple[str, int], ...] = ()
        super().__init__(backends, admits, build)

    def refresh(self) -> None:
        super().refresh()
        signature = tuple((b.name, b.weight) for b in self.backends)
        if signature != self.signature:
            self.signature = signature
            backends = list(self.backends)
            names = [b.name for b in backends]
            weights = [b.weight for b in backends]
            self.build(lambda: (backends, self.make_table(names, weights)), self._swap)

    def _swap(self, built: object) -> None:
        """Take what ``refresh`` had built (in a thread, handed over as an object)."""
        self.table_backends, self.table = cast("tuple[list[Host], Table]", built)

    def make_table(self, names: list[str], weights: list[int]) -> Table:
        raise NotImplementedError

    def _up(self, index: int) -> bool:
        return self.admits(self.table_backends[index])

    def pick_other(self, key: bytes | None, tried: set[Host]) -> Host | None:
        """The next host the table offers for the key, past those tried (the
        ring's next point, Maglev's next re-hash), as for a host that is down."""
        if self.table is None:
            return None
        hosts = self.table_backends
        index = self.table.pick(hashing.key_hash(key or b""),
                                lambda i: hosts[i] not in tried and self._up(i))
        return None if index is None else hosts[index]


class RingHash(_Hashed[hashing.HashRing]):
    def make_table(self, names: list[str], weights: list[int]) -> hashing.HashRing:
        return hashing.HashRing(names, weights, self.size)

    def pick(self, key: bytes | None) -> Host | None:
        table = self.table
        if table is None or not table.points:
            return None
        h = hashing.key_hash(key or b"")
        # Fast path: the first point's owner is up (the usual case).
        position = bisect(table.points, h)
        backend = self.table_backends[table.owners[position if position < len(table.points)
                                                   else 0]]
        if self.admits(backend):
            return backend
        index = table.pick(h, self._up)
        return None if index is None else self.table_backends[index]


class Maglev(_Hashed[hashing.MaglevTable]):
    def make_table(self, names: list[str], weights: list[int]) -> hashing.MaglevTable:
        return hashing.MaglevTable(names, weights, self.size or hashing.MAGLEV_SIZE)

    def pick(self, key: bytes | None) -> Host | None:
        if self.table is None:
            return None
        index = self.table.pick(hashing.key_hash(key or b""), self._up)
        return None if index is None else self.table_backends[index]


class BoundedLoad(RingHash):
    def __init__(self, backends: list[Host], admits: Admits, build: Build = build_now,
                 size: int | None = None, factor: float = hashing.BALANCE_FACTOR) -> None:
        self.factor = factor
        super().__init__(backends, admits, build, size)

    def pick(self, key: bytes | None) -> Host | None:
        if self.table is None:
            return None
        index = hashing.bounded_pick(self.table, hashing.key_hash(key or b""), self._up,
                                     self._load, self._weight, self.in_flight, self.total,
                                     self.factor)
        return None if index is None else self.table_backends[index]

    def _load(self, index: int) -> int:
        return self.table_backends[index].inflight

    def _weight(self, index: int) -> int:
        return self.table_backends[index].weight


ALGORITHMS: dict[str, type[Choice]] = {
    "round_robin": RoundRobin, "random": Random, "least_request": LeastRequest,
    "ring_hash": RingHash, "maglev": Maglev, "bounded_load": BoundedLoad,
}


def make_choice(algorithm: str, backends: list[Host], admits: Admits,
                build: Build = build_now, ring_size: int | None = None,
                maglev_size: int | None = None, balance_factor: float = 1.25) -> Choice:
    kind = ALGORITHMS[algorithm]
    if kind is BoundedLoad:
        return BoundedLoad(backends, admits, build, ring_size, balance_factor)
    if kind is RingHash:
        return RingHash(backends, admits, build, ring_size)
    if kind is Maglev:
        return Maglev(backends, admits, build, maglev_size)
    return kind(backends, admits, build)
