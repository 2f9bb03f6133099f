"""Choosing a host: smooth weighted round robin, and for every algorithm, that
a host the cluster does not admit (drain, maint, unresolved, weight 0) gets
no new requests while its keys go where the algorithm says."""

from __future__ import annotations

import asyncio
from bisect import bisect
from collections import Counter
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.config import (BalancerSettings, BreakerSettings, HealthSettings, PacerSettings,
                              PoolSettings, RetrySettings)
from dataplane.io.reactor import Reactor
from dataplane.kernel.transport import Transport
from dataplane.upstream import hashing
from dataplane.upstream.choice import ALGORITHMS, RoundRobin, make_choice
from dataplane.upstream.cluster import Cluster
from dataplane.upstream.host import Host

def admits(host: Host) -> bool:
    """The cluster's rule, outside panic."""
    return Cluster.admits(SimpleNamespace(panic=False), host)


def hosts(weights: list[int]) -> list[Host]:
    out = []
    for i, weight in enumerate(weights):
        host = Host(f"10.0.0.{i}", 80, weight)
        host.address = (host.host, 80)
        out.append(host)
    return out


def test_interleaves_by_weight():
    pool = hosts([5, 1, 1])
    rr = RoundRobin(pool, admits)
    picks = [rr.pick(None).host[-1] for _ in range(7)]
    assert picks == ["0", "0", "1", "0", "2", "0", "0"]   # nginx's documented sequence


@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=8))
def test_each_cycle_honours_weights_exactly(weights):
    pool = hosts(weights)
    rr = RoundRobin(pool, admits)
    total = sum(weights)
    counts = Counter(rr.pick(None).host for _ in range(total * 3)) if total else Counter()
    for host, weight in zip(pool, weights):
        assert counts[host.host] == weight * 3
    if not total:
        assert rr.pick(None) is None


def test_a_low_weight_host_gets_its_share_while_weights_change_at_every_pick():
    pool = hosts([2, 2, 1])
    rr = RoundRobin(pool, admits)
    counts = Counter()
    for step in range(100):
        for host, weight in zip(pool, [2, 2, 1]):
            host.weight = weight * (10 + step % 3)     # a ramp (slow start) moving weights
        rr.refresh()
        counts[rr.pick(None).host] += 1
    assert counts["10.0.0.2"] >= 15                     # 1/5 of 100, give or take


def test_unresolved_hosts_are_skipped():
    pool = hosts([1, 1])
    pool[0].address = None
    rr = RoundRobin(pool, admits)
    assert {rr.pick(None).host for _ in range(4)} == {pool[1].host}


KEYS = [b"user-%d" % i for i in range(20000)]


def ring_reference(choice, key: bytes) -> Host:
    """The owner of the first ring point at or after the key's hash whose host
    is admitted, found by walking the table (no fast path)."""
    table, h = choice.table, hashing.key_hash(key)
    start = bisect(table.points, h)
    for step in range(len(table.points)):
        owner = choice.table_backends[table.owners[(start + step) % len(table.points)]]
        if admits(owner):
            return owner
    raise AssertionError("nobody admitted")


def maglev_reference(choice, key: bytes) -> Host:
    """The key's slot owner, re-hashing the slot while its owner is not admitted."""
    table, h = choice.table.table, hashing.key_hash(key)
    owner = choice.table_backends[table[h % len(table)]]
    while not admits(owner):
        h = hashing.key_hash(h.to_bytes(8, "little"))
        owner = choice.table_backends[table[h % len(table)]]
    return owner


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("state", ["drain", "maint"])
def test_a_host_out_of_rotation_gets_nothing_new(algorithm, state):
    pool = hosts([100] * 6)
    choice = make_choice(algorithm, pool, admits, maglev_size=4093)
    before = [choice.pick(key) for key in KEYS]
    assert {h.name for h in before} == {h.name for h in pool}
    pool[2].state = state
    choice.refresh()
    after = [choice.pick(key) for key in KEYS]
    assert pool[2] not in after
    counts = Counter(h.name for h in after)
    assert len(counts) == 5 and min(counts.values()) > len(KEYS) / 5 * 0.7
    if not choice.hashed:
        return
    moved = [(b, a) for b, a in zip(before, after) if b is not pool[2] and a is not b]
    assert moved == []                # no key of another host moves
    reference = maglev_reference if algorithm == "maglev" else ring_reference
    for key, was, now in zip(KEYS, before, after):
        if was is pool[2]:
            assert now is reference(choice, key)
    pool[2].state = "ready"
    choice.refresh()
    assert [choice.pick(key) for key in KEYS] == before   # back: its keys return


def test_in_flight_accounting_returns_to_zero():
    loop = asyncio.new_event_loop()
    try:
        cluster = Cluster("default", BalancerSettings(algorithm="least_request"), PoolSettings(),
                          HealthSettings(), RetrySettings(), BreakerSettings(), Reactor(loop),
                          Transport(PacerSettings()), SimpleNamespace(slot=0))
        pool = hosts([1, 1])
        cluster.hosts[:] = pool
        cluster.choice.refresh()
        picked = [cluster.choose(None) for _ in range(10)]
        for host in picked:
            cluster.begin(host)
        assert cluster.choice.in_flight == 10
        for host in picked:
            cluster.release(host)
        assert cluster.choice.in_flight == 0 and all(h.inflight == 0 for h in pool)
    finally:
        loop.close()
