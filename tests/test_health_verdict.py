"""A backend's health states, driven with an injected clock."""

from __future__ import annotations

from dataplane.health.phi import PhiDetector
from dataplane.health.verdict import Health, HostHealth, HealthRules


def host(**rules) -> HostHealth:
    return HostHealth(HealthRules(**rules), PhiDetector(min_std=0.1), now=0.0)


def beating(h: HostHealth, until: float, every: float = 1.0, start: float = 0.0) -> float:
    t = start
    while t < until:
        t += every
        h.probe_passed(t, 1.0, "200")
    return t


def test_unknown_until_the_first_answer_then_up():
    h = host()
    assert h.state is Health.UNKNOWN
    move = h.probe_passed(1.0, 2.0, "200")
    assert move.new is Health.UP and move.reason == "first probe answered"


def test_a_bad_status_or_refusal_is_down_at_once():
    h = host()
    beating(h, 5)
    move = h.probe_failed(6.0, "503", 1.0)
    assert move.new is Health.DOWN and "503" in move.reason and h.state is Health.DOWN
    assert h.probe_failed(7.0, "refused", None) is None        # already down


def test_fall_timeouts_in_a_row():
    h = host(fall=3)
    t = beating(h, 5)
    assert h.probe_timed_out(t + 1) is None
    assert h.probe_timed_out(t + 2) is None
    assert h.probe_timed_out(t + 3).new is Health.DOWN


def test_phi_convicts_a_silent_backend_and_the_pause_excuses():
    h = host(threshold=8.0)
    t = beating(h, 10)
    assert h.check(t + 1.5, paused=0.0) is None
    assert h.check(t + 3.0, paused=2.0) is None          # 2 s of it were our stall
    move = h.check(t + 3.0, paused=0.0)
    assert move.new is Health.DOWN and move.reason.startswith("phi")


def test_rise_then_slow_start_ramps_then_up():
    h = host(rise=2, slow_start=30.0)
    t = beating(h, 10)
    h.probe_failed(t + 1, "refused", None)
    assert h.probe_passed(t + 2, 1.0, "200") is None              # one is not enough
    move = h.probe_passed(t + 3, 1.0, "200")
    assert move.new is Health.SLOW_START
    start = t + 3
    assert h.weight_percent(start) == 10
    assert h.weight_percent(start + 15) == 50
    beating(h, start + 29, start=start)
    assert h.check(start + 29.5, 0.0) is None and h.state is Health.SLOW_START
    assert h.check(start + 30.0, 0.0).new is Health.UP
    assert h.weight_percent(start + 31) == 100


def test_no_slow_start_when_off_and_none_at_first_start():
    h = host(rise=1, slow_start=0.0)
    assert h.probe_passed(1.0, 1.0, "200").new is Health.UP        # first start: no ramp
    h.probe_failed(2.0, "reset", None)
    assert h.probe_passed(3.0, 1.0, "200").new is Health.UP


def test_flapping_is_limited_by_rise():
    """Up for one probe, down for the next: with rise 2 it never comes back."""
    h = host(rise=2)
    beating(h, 5)
    states = []
    for i in range(20):
        t = 10.0 + i * 0.3
        if i % 2:
            h.probe_failed(t, "refused", None)
        else:
            h.probe_passed(t, 1.0, "200")
        states.append(h.state)
    assert set(states[1:]) == {Health.DOWN}
    assert len(h.transitions) == 2          # up (first answer), then down once


def test_a_followed_backend_is_not_convicted_by_its_silence():
    h = host(threshold=8.0)
    t = beating(h, 10)
    h.following = True                    # other members of a fleet probe it now
    assert h.check(t + 60, paused=0.0) is None and h.state is Health.UP
    h.following = False
    assert h.check(t + 60, paused=0.0).new is Health.DOWN


def test_back_from_a_fleet_wide_down_it_ramps_unless_down_here():
    h = host(slow_start=30.0)
    t = beating(h, 5)
    move = h.ramp(t, "fleet: 2 of 2 probers do not say down")
    assert move.new is Health.SLOW_START and h.weight_percent(t + 15) == 50
    down = host(slow_start=30.0)
    down.passive_down(1.0, "passive: refused")
    assert down.ramp(2.0, "fleet") is None and down.state is Health.DOWN
    assert host(slow_start=0.0).ramp(1.0, "fleet") is None
