"""A host's tally in a worker (one record per call, summed at the report) and
a cluster's retry budget: what the control process is sent, and when a
retry may start."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dataplane.upstream.budget import RetryBudget
from dataplane.upstream.outcome import ErrorKind
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
