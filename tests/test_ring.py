"""The shared-memory ring: a model check of every operation sequence, real
two-process runs, full-ring policies, and a consumer restart."""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.channel.ring import HEADER, Ring, RingCorrupt, RingFull

records = st.binary(min_size=0, max_size=100)
operations = st.lists(st.one_of(st.tuples(st.just("put"), records), st.just(("get", None))),
                      max_size=200)


@pytest.fixture
def ring():
    r = Ring.create(capacity=256)
    yield r
    r.close()


@given(operations)
def test_matches_a_fifo_model_for_any_sequence(ops):
    ring = Ring.create(capacity=256)
    try:
        model: deque[bytes] = deque()
        for op, record in ops:
            if op == "put":
                if ring.put(record):
                    model.append(record)
                else:   # refused only when it really does not fit
                    need = (4 + len(record) + 7) & ~7
                    room_at_end = 256 - ring.counters[128 // 8] % 256
                    skip = room_at_end if need > room_at_end else 0
                    assert len(ring) + skip + need > 256
            else:
                assert ring.get() == (model.popleft() if model else None)
            assert 0 <= len(ring) <= 256
        while model:
            assert ring.get() == model.popleft()
        assert ring.get() is None
    finally:
        ring.close()


def test_refuses_only_when_full(ring):
    count = 0
    while ring.put(b"x" * 28):     # 4 + 28 -> 32 bytes each
        count += 1
    assert count == 256 // 32
    assert ring.get() == b"x" * 28
    assert ring.put(b"y" * 28)
    assert not ring.put(b"y" * 28)


def test_wraps_around_without_splitting_records(ring):
    for i in range(1000):
        record = bytes([i % 251]) * (i % 90)
        assert ring.put(record)
        assert ring.get() == record


def test_oversized_record_is_an_error(ring):
    with pytest.raises(ValueError):
        ring.put(b"z" * 200)


def test_drop_policy_counts(ring):
    while ring.put_or_drop(b"a" * 50):
        pass
    assert ring.dropped == 1
    ring.put_or_drop(b"a" * 50)
    assert ring.dropped == 2


def test_wait_policy_times_out(ring):
    while ring.put(b"b" * 50):
        pass
    started = time.monotonic()
    with pytest.raises(RingFull):
        ring.put_or_wait(b"b" * 50, timeout=0.05)
    assert 0.04 < time.monotonic() - started < 1


def test_doorbell_hint_only_while_the_consumer_is_idle(ring):
    ring.put(b"1")
    assert not ring.wake                 # the consumer never said it sleeps
    assert ring.get() == b"1"
    assert ring.idle()                   # empty: it may sleep
    ring.put(b"2")
    assert ring.wake
    ring.busy()
    ring.put(b"3")
    assert not ring.wake
    assert not ring.idle()               # records waiting: it must not sleep
    assert [ring.get(), ring.get(), ring.get()] == [b"2", b"3", None]


def _consume(name: str, count: int, conn, pause: float, seed: int) -> None:
    rng = random.Random(seed)
    ring = Ring.attach(name)
    got = []
    deadline = time.monotonic() + 20
    while len(got) < count and time.monotonic() < deadline:
        record = ring.get()
        if record is None:
            time.sleep(rng.random() * pause)
        else:
            got.append(record)
    conn.send(got)
    ring.close()


def _run_pair(ring: Ring, sent: list[bytes], pause: float, seed: int) -> list[bytes]:
    parent, child = multiprocessing.Pipe()
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_consume, args=(ring.name, len(sent), child, pause, seed))
    proc.start()
    rng = random.Random(seed + 1)
    for record in sent:
        ring.put_or_wait(record, timeout=10)
        if rng.random() < 0.1:
            time.sleep(rng.random() * pause)
    got = parent.recv()
    proc.join(10)
    return got


@settings(max_examples=25, deadline=None)
@given(st.lists(records, min_size=1, max_size=300), st.integers(0, 2**16))
def test_two_processes_deliver_every_record_once_in_order(sent, seed):
    ring = Ring.create(capacity=512)       # small: forces waits and wrap-around
    try:
        assert _run_pair(ring, sent, pause=0.0005, seed=seed) == sent
    finally:
        ring.close()


def test_two_processes_many_records():
    ring = Ring.create(capacity=4096)
    try:
        sent = [os.urandom(random.randrange(0, 300)) for _ in range(20000)]
        assert _run_pair(ring, sent, pause=0.0001, seed=7) == sent
    finally:
        ring.close()


def test_restarted_consumer_resumes_where_the_last_one_stopped(ring):
    for i in range(5):
        ring.put(b"%d" % i)
    first = Ring.attach(ring.name)
    assert [first.get(), first.get()] == [b"0", b"1"]
    first.close()                      # the consumer goes away
    second = Ring.attach(ring.name)
    assert [second.get() for _ in range(4)] == [b"2", b"3", b"4", None]
    second.close()


def test_corrupt_counters_fail_loudly(ring):
    ring.put(b"abc")
    ring.counters[128 // 8] = 3        # tail misaligned
    with pytest.raises(RingCorrupt):
        Ring.attach(ring.name)
    with pytest.raises(RingCorrupt):
        ring.get()


def test_not_a_ring_fails_loudly():
    from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory(create=True, size=HEADER + 64)
    try:
        with pytest.raises(RingCorrupt):
            Ring.attach(shm.name)
    finally:
        shm.close()
        shm.unlink()
