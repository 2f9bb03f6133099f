"""Smooth weighted round robin."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from dataplane.backends import Backend
from dataplane.balance import RoundRobin
from dataplane.config import Backend as Spec


def backends(weights: list[int]) -> list[Backend]:
    out = []
    for i, weight in enumerate(weights):
        backend = Backend(Spec(host=f"10.0.0.{i}", port=80, weight=weight))
        backend.address = (backend.host, 80)
        out.append(backend)
    return out


def test_interleaves_by_weight():
    pool = backends([5, 1, 1])
    rr = RoundRobin(pool)
    picks = [rr.pick().host[-1] for _ in range(7)]
    assert picks == ["0", "0", "1", "0", "2", "0", "0"]   # nginx's documented sequence


@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=8))
def test_each_cycle_honours_weights_exactly(weights):
    pool = backends(weights)
    rr = RoundRobin(pool)
    total = sum(weights)
    counts = Counter(rr.pick().host for _ in range(total * 3)) if total else Counter()
    for backend, weight in zip(pool, weights):
        assert counts[backend.host] == weight * 3
    if not total:
        assert rr.pick() is None


def test_down_backends_are_skipped():
    pool = backends([1, 1])
    pool[0].address = None
    rr = RoundRobin(pool)
    assert {rr.pick().host for _ in range(4)} == {pool[1].host}


def test_in_flight_accounting_returns_to_zero():
    from dataplane.balance import LeastRequest
    pool = backends([1, 1])
    balancer = LeastRequest(pool)
    picked = [balancer.pick() for _ in range(10)]
    for backend in picked:
        balancer.acquire(backend)
    assert balancer.in_flight == 10
    for backend in picked:
        balancer.release(backend)
    assert balancer.in_flight == 0 and all(b.inflight == 0 for b in pool)
