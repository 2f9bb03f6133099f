"""Backend choice: ``balancer.algorithm`` and ``balancer.hash_key``.

- ``round_robin``: smooth weighted round robin (nginx's): each pick adds every
  backend's weight to its current weight, takes the largest and subtracts the
  total from the winner, so picks interleave in proportion to weight.
- ``random``: weighted random.
- ``least_request``: power of two choices: two weighted-random backends, the
  one with fewer in-flight requests per unit of weight wins.
- ``ring_hash``, ``maglev``, ``bounded_load``: consistent hashing of the
  request's key (hashing.py).

Down or weight-0 backends are never picked. Hash tables are rebuilt when the
backend set or a weight changes, through ``build`` (a thread in the worker),
and swapped in whole.
"""

from __future__ import annotations

import random
from bisect import bisect
from typing import Callable
from urllib.parse import parse_qsl

from . import hashing
from .backends import Backend

Build = Callable[[Callable[[], object], Callable[[object], None]], None]


def build_now(make: Callable[[], object], done: Callable[[object], None]) -> None:
    done(make())


class Balancer:
    """Base: keeps the candidate list; subclasses pick."""

    hashed = False

    def __init__(self, backends: list[Backend], build: Build = build_now) -> None:
        self.backends = backends
        self.build = build
        self.candidates: list[Backend] = []
        self.total = 0
        self.in_flight = 0      # requests (HTTP) or connections (TCP) under way
        self.refresh()

    def refresh(self) -> None:
        """Call after any up/down or weight change."""
        self.candidates = [b for b in self.backends if b.available]
        self.total = sum(b.weight for b in self.candidates)

    def pick(self, key: bytes | None) -> Backend | None:
        raise NotImplementedError

    def acquire(self, backend: Backend) -> None:
        backend.inflight += 1
        self.in_flight += 1

    def release(self, backend: Backend) -> None:
        backend.inflight -= 1
        self.in_flight -= 1


class RoundRobin(Balancer):
    def refresh(self) -> None:
        """The rotation restarts only when the candidates or their weights changed."""
        candidates = [b for b in self.backends if b.available]
        total = sum(b.weight for b in candidates)
        if candidates == self.candidates and total == self.total:
            return
        self.candidates, self.total = candidates, total
        for backend in self.backends:
            backend.current_weight = 0

    def pick(self, key: bytes | None = None) -> Backend | None:
        best: Backend | None = None
        best_weight = -1 << 62
        for backend in self.candidates:
            backend.current_weight += backend.weight
            if backend.current_weight > best_weight:
                best, best_weight = backend, backend.current_weight
        if best is not None:
            best.current_weight -= self.total
        return best


class Random(Balancer):
    def refresh(self) -> None:
        super().refresh()
        running, self.cumulative = 0, []
        for backend in self.candidates:
            running += backend.weight
            self.cumulative.append(running)

    def _weighted(self) -> Backend | None:
        if not self.total:
            return None
        return self.candidates[bisect(self.cumulative, random.randrange(self.total))]

    def pick(self, key: bytes | None = None) -> Backend | None:
        return self._weighted()


class LeastRequest(Random):
    def pick(self, key: bytes | None = None) -> Backend | None:
        first, second = self._weighted(), self._weighted()
        if first is None or second is None:
            return first
        # Fewer in-flight requests per unit of weight wins (cross-multiplied).
        return second if second.inflight * first.weight < first.inflight * second.weight \
            else first


class _Hashed(Balancer):
    """Common part of the consistent-hashing balancers: the table over all
    positive-weight backends, rebuilt (off the hot path) when it changes."""

    hashed = True

    def __init__(self, backends, build: Build = build_now, size: int | None = None) -> None:
        self.size = size
        self.table = None
        self.table_backends: list[Backend] = []
        self.signature: tuple = ()
        super().__init__(backends, build)

    def refresh(self) -> None:
        super().refresh()
        signature = tuple((b.name, b.weight) for b in self.backends)
        if signature != self.signature:
            self.signature = signature
            backends = list(self.backends)
            names = [b.name for b in backends]
            weights = [b.weight for b in backends]
            self.build(lambda: (backends, self.make_table(names, weights)), self._swap)

    def _swap(self, built) -> None:
        self.table_backends, self.table = built

    def make_table(self, names: list[str], weights: list[int]):
        raise NotImplementedError

    def _up(self, index: int) -> bool:
        return self.table_backends[index].available


class RingHash(_Hashed):
    def make_table(self, names, weights):
        return hashing.Ring(names, weights, self.size)

    def pick(self, key: bytes | None) -> Backend | None:
        table = self.table
        if table is None or not table.points:
            return None
        h = hashing.key_hash(key or b"")
        # Fast path: the first point's owner is up (the usual case).
        position = bisect(table.points, h)
        backend = self.table_backends[table.owners[position if position < len(table.points)
                                                   else 0]]
        if backend.address is not None and backend.weight > 0:
            return backend
        index = table.pick(h, self._up)
        return None if index is None else self.table_backends[index]


class Maglev(_Hashed):
    def make_table(self, names, weights):
        return hashing.Maglev(names, weights, self.size or hashing.MAGLEV_SIZE)

    def pick(self, key: bytes | None) -> Backend | None:
        if self.table is None:
            return None
        index = self.table.pick(hashing.key_hash(key or b""), self._up)
        return None if index is None else self.table_backends[index]


class BoundedLoad(RingHash):
    def __init__(self, backends, build: Build = build_now, size: int | None = None,
                 factor: float = hashing.BALANCE_FACTOR) -> None:
        self.factor = factor
        super().__init__(backends, build, size)

    def pick(self, key: bytes | None) -> Backend | None:
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


ALGORITHMS: dict[str, type[Balancer]] = {
    "round_robin": RoundRobin, "random": Random, "least_request": LeastRequest,
    "ring_hash": RingHash, "maglev": Maglev, "bounded_load": BoundedLoad,
}


def make_balancer(algorithm: str, backends: list[Backend], build: Build = build_now,
                  ring_size: int | None = None, balance_factor: float = 1.25) -> Balancer:
    kind = ALGORITHMS[algorithm]
    if kind is BoundedLoad:
        return BoundedLoad(backends, build, ring_size, balance_factor)
    if kind is RingHash:
        return RingHash(backends, build, ring_size)
    if kind is Maglev:
        return Maglev(backends, build, ring_size)
    return kind(backends, build)


# -- hash keys -----------------------------------------------------------
KeyOf = Callable[[bytes, bytes, list], bytes]   # (client ip, target, headers) -> key


def key_function(spec: str) -> KeyOf:
    """What a request is hashed by; when that part is absent, the client IP."""
    kind, _, name = spec.partition(":")
    wanted = name.lower().encode()
    if kind == "client_ip":
        return lambda ip, target, headers: ip
    if kind == "path":
        return lambda ip, target, headers: target.split(b"?", 1)[0]
    if kind == "header":
        def by_header(ip: bytes, target: bytes, headers: list) -> bytes:
            for header, value in headers:
                if header.lower() == wanted:
                    return value
            return ip
        return by_header
    if kind == "cookie":
        def by_cookie(ip: bytes, target: bytes, headers: list) -> bytes:
            for header, value in headers:
                if header.lower() == b"cookie":
                    for pair in value.split(b";"):
                        cookie, _, content = pair.strip().partition(b"=")
                        if cookie.lower() == wanted:
                            return content
            return ip
        return by_cookie
    if kind == "query":
        def by_query(ip: bytes, target: bytes, headers: list) -> bytes:
            _, _, query = target.partition(b"?")
            for parameter, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if parameter.lower().encode() == wanted:
                    return value.encode("latin-1")
            return ip
        return by_query
    raise ValueError(f"unknown hash_key {spec!r}")
