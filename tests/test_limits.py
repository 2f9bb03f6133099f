"""Per-client counts (dataplane/limits): never under the truth, bounded memory,
shared across workers, and the policy a worker applies with them."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.limits.counts import ClientCounts, buffer_size, positions
from dataplane.limits.per_client import PerClient

ADDRESSES = st.builds(lambda a, b: f"10.{a}.{b}.1", st.integers(0, 255), st.integers(0, 255))


def two_workers():
    buffer = bytearray(buffer_size(2))
    return ClientCounts(buffer, 2, 0), ClientCounts(buffer, 2, 1)


@settings(max_examples=200)
@given(st.lists(st.tuples(ADDRESSES, st.booleans()), max_size=300))
def test_open_connections_are_never_under_counted(events):
    first, second = two_workers()
    truth: Counter = Counter()
    for address, on_second in events:
        (second if on_second else first).opened(positions(address))
        truth[address] += 1
    for address, count in truth.items():
        assert first.open_connections(positions(address)) >= count
        assert second.open_connections(positions(address)) >= count


def test_counts_are_exact_without_collisions_and_closing_gives_them_back():
    first, second = two_workers()
    a, b = positions("198.18.0.2"), positions("198.18.0.3")
    assert not set(a) & set(b)
    for _ in range(3):
        first.opened(a)
    second.opened(a)
    second.opened(b)
    assert (first.open_connections(a), second.open_connections(b)) == (4, 1)
    first.closed(a)
    assert second.open_connections(a) == 3


def test_many_addresses_fit_in_fixed_memory_and_barely_touch_the_others():
    """768 KiB a worker however many addresses appear (docs/config.md); with
    50,000 addresses holding a connection each, an address never seen is
    over-counted by about one (two buckets of 65,536, the smaller one counts)."""
    assert buffer_size(1) // 1024 == 768
    first, _ = two_workers()
    for i in range(50_000):
        first.opened(positions(f"2001:db8::{i:x}"))
    unseen = [first.open_connections(positions(f"10.0.{i >> 8}.{i & 255}"))
              for i in range(10_000)]
    assert max(unseen) <= 8 and sum(unseen) / len(unseen) < 1.5


def test_a_replaced_worker_starts_from_an_empty_row():
    buffer = bytearray(buffer_size(2))
    old = ClientCounts(buffer, 2, 1)
    old.opened(positions("198.18.0.2"))
    ClientCounts(buffer, 2, 1)              # the same slot, after a restart
    assert ClientCounts(buffer, 2, 0).open_connections(positions("198.18.0.2")) == 0


def test_the_rate_slides_over_two_seconds_and_sums_the_workers():
    first, second = two_workers()
    where = positions("198.18.0.2")
    for _ in range(6):
        first.requested(where, 1000.1)
    for _ in range(4):
        second.requested(where, 1000.6)
    assert first.rate(where, 1000.9) == 10
    assert first.rate(where, 1001.25) == 7.5         # three quarters of the last second
    assert first.rate(where, 1002.0) == 0            # two seconds later: nothing left
    second.requested(where, 1002.0)                  # the even window is started again
    assert first.rate(where, 1002.5) == 1


def policy(connections=None, rate=None, tcp=False) -> PerClient:
    return PerClient(ClientCounts(bytearray(buffer_size(1)), 1, 0), connections, rate, tcp)


def test_the_connection_limit_refuses_the_next_one_until_one_closes():
    limits = policy(connections=2)
    held = []
    for _ in range(2):
        assert limits.admit("198.18.0.2") is None
        held.append(object())
        limits.hold(held[-1])
    assert "per_client_connections" in limits.admit("198.18.0.2")
    assert limits.admit("198.18.0.9") is None        # another address is not affected
    limits.hold(object())
    limits.release(held[0])
    assert limits.admit("198.18.0.2") is None
    assert limits.refused_connections == 1


def test_the_request_rate_counts_only_admitted_requests():
    limits = policy(rate=5)
    assert limits.admit("198.18.0.2") is None
    conn = object()
    limits.hold(conn)
    allowed = [limits.allow_request(conn) for _ in range(8)]
    assert allowed == [True] * 5 + [False] * 3
    assert limits.refused_requests == 3


def test_in_tcp_mode_the_rate_counts_new_connections():
    limits = policy(rate=3, tcp=True)
    answers = [limits.admit("198.18.0.2") for _ in range(5)]
    assert answers[:3] == [None] * 3
    assert all("per_client_rate" in answer for answer in answers[3:])
