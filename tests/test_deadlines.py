"""Which timeout runs out while bodies move (deadline.stream_expiry), with an
injected clock."""

from __future__ import annotations

from dataplane.config import TimeoutSettings
from dataplane.http.deadline import stream_expiry

T = TimeoutSettings(idle=60, client_body=5, backend_idle=7, client_write=3)


def due(now, client_in=0.0, backend_in=0.0, stalled=None, body=False, reading=False):
    return stream_expiry(now, T, client_in, backend_in, stalled, body, reading)


def test_a_stalled_request_body_runs_out_after_client_body():
    assert due(4.9, body=True) == (None, 5.0)
    assert due(5.0, body=True)[0] == "client_body"
    assert due(5.0, client_in=1.0, body=True) == (None, 6.0)   # a byte came at 1 s


def test_a_silent_backend_counts_only_while_it_is_read():
    assert due(7.0, reading=True)[0] == "backend_idle"
    assert due(7.0, reading=False) == (None, 60.0)            # held back for the client


def test_a_client_not_reading_runs_out_after_client_write_from_the_stall():
    assert due(12.5, client_in=12, backend_in=12, stalled=10.0) == (None, 13.0)
    assert due(13.0, client_in=12, backend_in=12, stalled=10.0)[0] == "client_write"


def test_idle_bounds_everything_and_the_earliest_wins():
    assert due(60.0) == ("idle", 60.0)
    assert due(0.0, body=True, reading=True, stalled=0.0) == (None, 3.0)
