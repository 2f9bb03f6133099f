"""The phi-accrual detector and the pause guard, driven with an injected clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.health.pause import PauseGuard
from dataplane.health.phi import PhiDetector, phi_of

# (mean, std, elapsed, phi): phi = -log10(erfc((t - mean) / (std sqrt 2)) / 2)
# computed with mpmath at 60 digits, independently of the code under test.
TABLE = [
    (1.0, 0.1, 0.5, 1.24491213738829e-7),
    (1.0, 0.1, 1.0, 0.301029995663981),
    (1.0, 0.1, 1.2, 1.64301608014094),
    (1.0, 0.1, 1.5, 6.54264567239065),
    (1.0, 0.1, 1.563, 8.04525202088383),
    (1.0, 0.1, 1.6, 9.00586432747671),
    (10.0, 0.1, 10.5, 6.54264567239065),
    (10.0, 1.0, 13.0, 2.86969903592937),
    (10.0, 1.0, 20.0, 23.1180534054861),
    (1.0, 0.1, 3.88, 181.969611987625),   # erfc still representable
    (1.0, 0.1, 4.0, 197.309209261661),    # the asymptotic branch
    (1.0, 0.1, 10.0, 1761.24603775185),
    (0.1, 0.1, 100.0, 216716.562272821),
    (1.0, 0.5, 1000.0, 866856.354153381),
    (2.0, 0.2, 0.0, 3.30926012130674e-24),
]


@pytest.mark.parametrize("mean, std, elapsed, expected", TABLE)
def test_phi_matches_an_independent_computation(mean, std, elapsed, expected):
    assert phi_of(elapsed, mean, std) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@given(st.floats(0, 1e6), st.floats(0.001, 100), st.floats(0.001, 100))
def test_phi_is_finite_non_negative_and_monotonic(elapsed, mean, std):
    phi = phi_of(elapsed, mean, std)
    assert math.isfinite(phi) and phi >= 0
    assert phi_of(elapsed + 1.0, mean, std) >= phi


def detector_with(intervals: list[float], **settings) -> tuple[PhiDetector, float]:
    detector = PhiDetector(**settings)
    now = 100.0
    detector.heartbeat(now)
    for interval in intervals:
        now += interval
        detector.heartbeat(now)
    return detector, now


def test_no_opinion_without_history():
    detector, now = detector_with([1.0])
    assert not detector.ready and detector.phi(now + 1000) == 0.0


def test_window_statistics_and_min_std():
    detector, now = detector_with([1.0] * 10)
    assert detector.mean() == pytest.approx(1.0) and detector.std() == pytest.approx(0.0)
    # std 0 is raised to min_std 0.1: phi 8 is crossed about 1.56 s after the last beat
    assert detector.phi(now + 1.5) < 8 < detector.phi(now + 1.6)
    assert detector.phi(now + 1.6) == pytest.approx(phi_of(1.6, 1.0, 0.1))


def test_window_keeps_only_the_last_intervals():
    detector, _ = detector_with([5.0] * 3 + [1.0] * 4, window=4)
    assert list(detector.intervals) == [1.0] * 4 and detector.mean() == pytest.approx(1.0)


def test_acceptable_pause_shifts_the_mean():
    strict, now = detector_with([1.0] * 10)
    lenient, _ = detector_with([1.0] * 10, acceptable_pause=3.0)
    assert lenient.phi(now + 4.0) == pytest.approx(strict.phi(now + 1.0))


def test_requests_refresh_life_but_never_enter_the_window():
    detector, now = detector_with([1.0] * 10)
    detector.alive(now + 0.9)                  # a request succeeded
    assert len(detector.intervals) == 10
    assert detector.phi(now + 2.4) == pytest.approx(phi_of(1.5, 1.0, 0.1))
    detector.heartbeat(now + 1.0)              # the interval is probe to probe
    assert detector.intervals[-1] == pytest.approx(1.0)


def test_a_late_answer_is_still_a_heartbeat():
    detector, now = detector_with([1.0] * 10)
    assert detector.phi(now + 3.0) > 8
    detector.heartbeat(now + 3.0)
    assert detector.phi(now + 3.0) < 1 and detector.intervals[-1] == pytest.approx(3.0)


def test_pause_guard_excuses_our_own_stall():
    guard = PauseGuard(period=0.1)
    detector, now = detector_with([1.0] * 10)
    mark = guard.total
    t = now
    for _ in range(5):                  # the loop runs normally for 0.5 s
        t += 0.1
        assert guard.tick(t) == 0.0
    t += 5.0                            # then stalls for 5 s
    assert guard.tick(t) == pytest.approx(4.9)
    assert detector.phi(t) > 100                                     # naively: convicted
    assert detector.phi(t, paused=guard.since(mark)) < 1            # net of the stall: fine
    # silent for longer than the stall explains: convicted again
    for _ in range(20):
        t += 0.1
        guard.tick(t)
    assert detector.phi(t, paused=guard.since(mark)) > 8


def test_an_outage_does_not_enter_the_window():
    detector, now = detector_with([1.0] * 10)
    detector.interrupt()                 # a probe was refused
    detector.heartbeat(now + 30.0)       # back after 30 s
    detector.heartbeat(now + 31.0)
    assert max(detector.intervals) == pytest.approx(1.0)
