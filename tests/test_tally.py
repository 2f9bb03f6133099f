"""A host's tally in a worker (one record per call, summed at the report) and
a cluster's retry budget: what the control process is sent, and when a
retry may start."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dataplane.upstream.budget import RetryBudget
from dataplane.upstream.outcome import ErrorKind
from bisect import bisect_left

from dataplane.upstream.tally import BOUNDS_MS, SAMPLES, HostTally


def test_a_report_sums_the_calls_and_starts_again():
    tally = HostTally(histogram=True)
    tally.calls += [(200, 1.5, 0, 17, None), (404, 0.2, 10, 5, None),
                    (502, 3.0, 0, 0, ErrorKind.CONNECT_REFUSED),
                    (0, 9.0, 0, 0, ErrorKind.RESET_MID_RESPONSE)]
    figures = tally.take()
    assert figures is not None
    assert (figures.requests, figures.answered) == (4, 2)
    assert (figures.bytes_in, figures.bytes_out) == (10, 22)
    assert figures.statuses == [0, 0, 1, 0, 1, 1]          # 2xx, 4xx, 5xx; 0 not counted
    assert (figures.connect_errors, figures.response_errors) == (1, 1)
    assert sorted(figures.latencies) == [0.2, 1.5]          # answered calls only
    assert sum(figures.durations) == 2 and figures.duration_ms == 1.7
    assert figures.durations[BOUNDS_MS.index(0.5)] == 1     # 0.2 ms
    assert tally.take() is None                             # nothing since


def test_without_the_histogram_no_durations_are_sent():
    tally = HostTally()
    tally.calls.append((200, 1.0, 0, 0, None))
    figures = tally.take()
    assert figures is not None and figures.durations == [] and figures.duration_ms == 0.0


@given(st.integers(1, 20_000))
def test_latencies_are_sampled_evenly_and_at_most_samples(count):
    tally = HostTally()
    tally.calls += [(200, float(i), 0, 0, None) for i in range(count)]
    figures = tally.take()
    assert figures is not None
    latencies = figures.latencies
    assert 0 < len(latencies) <= SAMPLES
    assert latencies[0] == 0.0                         # from the start...
    assert latencies[-1] >= count - 1 - count / SAMPLES   # ...to the end
    steps = {b - a for a, b in zip(latencies, latencies[1:])}
    assert len(steps) <= 1                             # evenly spaced


CALLS = st.lists(st.tuples(
    st.sampled_from([0, 99, 100, 200, 204, 301, 404, 503, 599, 600]),
    st.one_of(st.sampled_from([0.5, 1.0, 2.5, 10000.0]), st.floats(0, 20000)),
    st.integers(0, 10**6), st.integers(0, 10**6),
    st.sampled_from([None, None, ErrorKind.CONNECT_REFUSED, ErrorKind.RESET_MID_RESPONSE]),
), min_size=1, max_size=300)


@given(CALLS)
def test_a_report_counts_as_one_would_call_by_call(calls):
    """The sums made in C come to what counting each call in turn gives,
    bucket bounds included (a bound is the top of its bucket)."""
    tally = HostTally(histogram=True)
    tally.calls += calls
    figures = tally.take()
    assert figures is not None
    answered = [ms for _, ms, _, _, kind in calls if kind is None]
    statuses = [0] * 6
    durations = [0] * (len(BOUNDS_MS) + 1)
    for status, *_ in calls:
        if 100 <= status < 600:
            statuses[status // 100] += 1
    for ms in answered:
        durations[bisect_left(BOUNDS_MS, ms)] += 1
    assert figures.statuses == statuses
    assert figures.bytes_in == sum(call[2] for call in calls)
    assert figures.bytes_out == sum(call[3] for call in calls)
    assert figures.connect_errors == sum(call[4] is ErrorKind.CONNECT_REFUSED for call in calls)
    assert figures.response_errors == sum(call[4] is ErrorKind.RESET_MID_RESPONSE for call in calls)
    assert figures.answered == len(answered)
    assert figures.durations == (durations if answered else [])
    assert set(figures.latencies) <= set(answered)


def test_the_retry_budget_allows_the_minimum_then_a_share_of_first_tries():
    budget = RetryBudget(budget_percent=20, min_concurrent=3)
    budget.attempts_now = 100
    for first in range(3):                        # the minimum, whatever the share
        assert budget.allows(in_flight=3)
        budget.retried(first=True)
    assert not budget.allows(in_flight=3)         # 3 retrying of 3 under way
    assert budget.allows(in_flight=50)            # 3 < 20% of the 47 first tries
    budget.request_ended()
    assert budget.retrying == 2


def test_the_retry_budget_rate_side_counts_the_last_two_buckets():
    budget = RetryBudget(budget_percent=10, min_concurrent=1)
    budget.rotate(0.0)
    budget.attempts_now, budget.retries_now = 20, 2     # 2 of 18 first tries: over 10%
    assert not budget.allows(in_flight=100)
    budget.rotate(5.0)                                  # the previous bucket still counts
    assert not budget.allows(in_flight=100)
    budget.rotate(10.0)                                 # now forgotten
    assert budget.allows(in_flight=100)
