"""Passive health and panic verdicts (upstream/passive.py)."""

from dataplane.upstream.outcome import ErrorKind
from dataplane.upstream.passive import in_panic, panic_weights, passive_verdict


def test_a_refused_connect_is_down_at_once():
    assert passive_verdict(0, ErrorKind.CONNECT_REFUSED, 3) == (0, "connect refused")


def test_counted_errors_in_a_row_reach_the_limit():
    failures = 0
    for _ in range(2):
        failures, reason = passive_verdict(failures, ErrorKind.CONNECT_TIMEOUT, 3)
        assert reason is None
    failures, reason = passive_verdict(failures, ErrorKind.RESET_BEFORE_RESPONSE, 3)
    assert (failures, reason) == (3, "3 errors in a row, the last reset_before_response")


def test_errors_that_say_nothing_of_health_do_not_count():
    assert passive_verdict(2, ErrorKind.RESPONSE_TIMEOUT, 3) == (2, None)


def test_panic_needs_some_but_too_little_healthy_weight():
    hosts = [(1, "ready", "down"), (1, "ready", "down"), (1, "ready", "up"),
             (5, "maint", "up"), (0, "ready", "up")]
    healthy, total = panic_weights(hosts)
    assert (healthy, total) == (1, 3)
    assert in_panic(healthy, total, 50)
    assert not in_panic(healthy, total, 30)
    assert not in_panic(0, 3, 50)          # none healthy: no panic, no host
