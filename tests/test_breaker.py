"""The circuit breaker's sans-IO core, driven with an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.breaker.machine import Breaker, Phase, BreakerRules
from dataplane.breaker.policy import Judge, may_eject, share
from dataplane.breaker.window import CallWindow
from dataplane.upstream.breakers import verdict_of
from dataplane.upstream.outcome import FAILURE_CLASS, ErrorKind


@given(st.integers(1, 20), st.lists(st.tuples(st.booleans(), st.booleans()), max_size=200))
def test_the_window_counts_exactly_the_last_calls(size, calls):
    window = CallWindow(size)
    for failed, slow in calls:
        window.extend(bytes([failed + 2 * slow]))
    last = calls[-size:]
    assert window.calls == len(last)
    assert window.failures == sum(f for f, _ in last)
    assert window.slow == sum(s for _, s in last)
    run = 0
    for failed, _ in calls:
        run = run + 1 if failed else 0
    assert window.in_a_row == run


@given(st.integers(1, 20), st.lists(st.binary(max_size=30).map(lambda b: bytes(x % 4 for x in b)),
                                   max_size=10))
def test_batches_count_as_the_same_calls_one_by_one(size, batches):
    one, many = CallWindow(size), CallWindow(size)
    for batch in batches:
        longest, run = 0, one.in_a_row
        for mark in batch:
            one.extend(bytes([mark]))
            run = run + 1 if mark & 1 else 0
            longest = max(longest, run)
        assert many.extend(batch) == longest
        assert (many.calls, many.failures, many.slow, many.in_a_row) == \
            (one.calls, one.failures, one.slow, one.in_a_row)
        assert sorted(many.marks[:many.calls]) == sorted(one.marks[:one.calls])


def test_a_batch_with_failures_in_a_row_trips_even_if_it_ends_well():
    b = Breaker(BreakerRules(consecutive=5, min_calls=100))
    assert b.record_many(b"\x00\x01\x01\x01\x00") is None
    assert b.record_many(b"\x01\x01\x01\x01\x01\x00\x00") == "5 failures in a row"


def feed(b: Breaker, results: str) -> str | None:
    """'f' a failure, 'o' a success, 's' a slow success; the last trip reason."""
    reason = None
    for r in results:
        reason = b.record_many(b"\x01" if r == "f" else b"\x02" if r == "s" else b"\x00") or reason
    return reason


def test_failure_rate_needs_min_calls_then_trips():
    b = Breaker(BreakerRules(window=10, min_calls=10, failure_rate=0.5, consecutive=100))
    assert feed(b, "fofofofof") is None            # 9 calls: under min_calls
    assert feed(b, "o") == "5 of the last 10 calls failed"


def test_consecutive_failures_trip_before_min_calls():
    b = Breaker(BreakerRules(consecutive=5, min_calls=20))
    assert feed(b, "offff") is None
    assert feed(b, "f") == "5 failures in a row"


def test_slow_calls_trip_on_their_rate():
    b = Breaker(BreakerRules(window=10, min_calls=10, slow_rate=0.8))
    assert feed(b, "sssssssoo") is None
    assert feed(b, "s") == "8 of the last 10 calls were slow"


def test_open_time_doubles_per_failed_trial_up_to_the_cap_and_resets_on_close():
    b = Breaker(BreakerRules(open_for=5, max_open_for=30, trial_calls=1))
    b.open(0.0, "test")
    lengths = []
    for _ in range(5):
        opened = b.history[-1].at
        lengths.append(b.until - opened)
        assert not b.poll(b.until - 0.001)
        assert b.poll(b.until) and b.phase is Phase.HALF_OPEN
        b.trial(b.until, False)                     # the trial fails: open again
    assert lengths == [5, 10, 20, 30, 30]
    b.poll(b.until)
    b.trial(b.until, True)                          # the trial passes: closed
    b.open(1000.0, "again")
    assert b.until - 1000.0 == 5


def test_half_open_closes_after_all_trials_pass_and_forgets_the_window():
    b = Breaker(BreakerRules(trial_calls=2, open_for=5))
    feed(b, "fffff")
    b.open(0.0, "5 failures in a row")
    assert feed(b, "ffff") is None and b.window.calls == 5   # stragglers ignored
    b.poll(5.0)
    b.trial(5.1, True)
    assert b.phase is Phase.HALF_OPEN
    b.trial(5.2, True)
    assert b.phase is Phase.CLOSED and b.window.calls == 0 and b.trips == 0
    assert [t.new for t in b.history] == [Phase.OPEN, Phase.HALF_OPEN, Phase.CLOSED]


def test_a_failed_trial_reopens_for_twice_as_long():
    b = Breaker(BreakerRules(open_for=5))
    b.open(0.0, "x")
    b.poll(5.0)
    b.trial(5.0, False)                 # a worker reports a slow trial as failed too
    assert b.phase is Phase.OPEN and b.until == pytest.approx(15.0)
    assert b.history[-1].reason == "a trial call failed"


def test_forced_open_stays_until_forced_closed():
    b = Breaker(BreakerRules())
    b.force(0.0, Phase.OPEN, "operator")
    assert not b.poll(1e9)
    b.force(1.0, Phase.CLOSED, "operator")
    assert b.phase is Phase.CLOSED and b.trips == 0


@pytest.mark.parametrize("failure_on,kind,status,failed", [
    (["connect", "reset", "timeout", "5xx"], ErrorKind.NONE, 500, True),
    (["connect", "reset", "timeout", "5xx"], ErrorKind.NONE, 404, False),
    (["connect", "reset", "timeout", "5xx"], ErrorKind.CONNECT_REFUSED, 502, True),
    (["connect", "reset", "timeout", "5xx"], ErrorKind.RESPONSE_TIMEOUT, 504, True),
    (["connect", "reset", "timeout", "5xx"], ErrorKind.RESET_MID_RESPONSE, 200, True),
    (["connect", "reset", "timeout", "5xx"], ErrorKind.CLIENT_ABORTED, 0, False),
    (["connect", "reset", "timeout", "5xx"], ErrorKind.POOL_FULL, 503, False),
    (["connect", "reset", "timeout", "5xx"], ErrorKind.HOST_DOWN, 0, False),
    (["503"], ErrorKind.NONE, 503, True),
    (["503"], ErrorKind.NONE, 500, False),
    (["503"], ErrorKind.CONNECT_REFUSED, 502, False),
    (["timeout"], ErrorKind.CONNECT_TIMEOUT, 502, False),     # a connect error
])
def test_what_counts_as_a_failure(failure_on, kind, status, failed):
    assert verdict_of(Judge(failure_on, None), status, 1.0, kind) == (
        (failed, False) if FAILURE_CLASS[kind] is not None else None)


def test_every_error_kind_has_a_failure_class():
    assert set(FAILURE_CLASS) == set(ErrorKind)


def test_slow_is_off_unless_set():
    def slow(ms: float, slow_call: float | None) -> bool:
        verdict = verdict_of(Judge(["5xx"], slow_call), 200, ms, ErrorKind.NONE)
        assert verdict is not None
        return verdict[1]
    assert not slow(1e9, None)
    assert slow(251, 0.25) and not slow(250, 0.25)


def test_ejection_cap_first_always_then_within_the_share():
    def group(out: int) -> list[tuple[int, bool]]:     # 4 backends of weight 100
        return [(100, i < out) for i in range(4)]
    assert may_eject(100, [(100, False)], 50)         # the only backend: the first may go
    assert may_eject(100, group(1), 50)               # 2 of 4
    assert not may_eject(100, group(2), 50)           # not 3 of 4
    assert not may_eject(100, group(1), 0) and may_eject(100, group(0), 0)


@given(st.integers(1, 10_000), st.integers(1, 64))
def test_worker_shares_add_up_to_the_limit_and_differ_by_one_at_most(limit, workers):
    parts = [share(limit, slot, workers) for slot in range(workers)]
    assert sum(parts) == limit and max(parts) - min(parts) <= 1
    assert share(None, 0, workers) is None
