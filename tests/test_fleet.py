"""The fleet's cores without I/O: who probes what, the majority rule, the key
layout, and what the member accepts from etcd."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.config import parse
from dataplane.fleet.etcd import Compacted, EtcdError, _watch_result
from dataplane.fleet.keys import Layout
from dataplane.fleet.member import _fields
from dataplane.fleet.shards import probers
from dataplane.fleet.view import FleetView, Observation

BACKENDS = [f"10.0.{i // 250}.{i % 250}:80" for i in range(1000)]
MEMBERS = [f"lb-{c}" for c in "abcde"]


def seen(state: str) -> Observation:
    return Observation(state, None, f"probe said {state}", 0.0)


def test_each_backend_gets_replicas_distinct_members_spread_evenly():
    load = Counter()
    for backend in BACKENDS:
        chosen = probers(backend, MEMBERS, 2)
        assert len(set(chosen)) == 2
        load.update(chosen)
    # 2,000 probe assignments over 5 members: 400 each, give or take.
    assert all(340 <= n <= 460 for n in load.values()), load


@given(st.sets(st.sampled_from(MEMBERS), min_size=2), st.integers(1, 3))
def test_a_member_leaving_moves_only_the_backends_it_probed(members, replicas):
    gone = sorted(members)[0]
    rest = members - {gone}
    for backend in BACKENDS[:100]:
        before, after = probers(backend, members, replicas), probers(backend, rest, replicas)
        if gone not in before:
            assert after == before
        else:
            assert [m for m in before if m != gone] == after[:len(before) - 1]


def test_the_order_of_the_members_does_not_matter():
    assert all(probers(b, MEMBERS, 3) == probers(b, MEMBERS[::-1], 3) for b in BACKENDS[:50])


def view_with(replicas: int, states: dict[str, str], backend: str = BACKENDS[0]) -> FleetView:
    view = FleetView("lb-a", replicas)
    view.set_members(MEMBERS)
    chosen = view.probers(backend)
    for i, state in states.items():
        view.observe(backend, chosen[i] if isinstance(i, int) else i, seen(state))
    return view


@pytest.mark.parametrize("replicas, states, down", [
    (2, {0: "down"}, False),                  # one of two: not a majority
    (2, {0: "down", 1: "down"}, True),
    (2, {0: "down", 1: "up"}, False),
    (3, {0: "down", 1: "down", 2: "up"}, True),
    (3, {0: "down", 2: "unknown"}, False),
    (1, {0: "down"}, True),
])
def test_down_fleet_wide_when_more_than_half_of_the_live_probers_say_so(replicas, states, down):
    verdict = view_with(replicas, states).verdict(BACKENDS[0])
    assert verdict.down is down, verdict


def test_members_that_do_not_probe_a_backend_are_not_counted():
    view = view_with(1, {})
    chosen = view.probers(BACKENDS[0])
    others = [m for m in MEMBERS if m not in chosen]
    for member in others:
        view.observe(BACKENDS[0], member, seen("down"))
    assert view.verdict(BACKENDS[0]) is None        # its prober has not spoken
    view.observe(BACKENDS[0], chosen[0], seen("up"))
    assert view.verdict(BACKENDS[0]).down is False


def test_a_prober_that_leaves_takes_its_say_with_it():
    view = view_with(1, {0: "down"})
    first = view.probers(BACKENDS[0])[0]
    view.leave(first)
    assert first not in view.probers(BACKENDS[0])
    assert view.verdict(BACKENDS[0]) is None


def test_assigned_is_what_this_member_probes():
    view = FleetView("lb-c", 2)
    view.set_members(MEMBERS)
    assert view.assigned(BACKENDS) == {b for b in BACKENDS if "lb-c" in probers(b, MEMBERS, 2)}


def test_key_layout_reads_back_what_it_writes():
    layout = Layout("/l7lb/prod")
    assert layout.observation_of(layout.observation("api/10.0.0.1:80", "lb-a")) == \
        ("api/10.0.0.1:80", "lb-a")
    assert layout.backend_of(layout.backend("api", "[2001:db8::1]:80")) == \
        ("api", "[2001:db8::1]:80")
    assert layout.member_of(layout.member("lb-a")) == "lb-a"
    assert layout.members == "/l7lb/prod/members/"


@pytest.mark.parametrize("raw", [{"weight": -1}, {"weight": "x"}, {"state": "gone"},
                                 {"congestion_control": 7}])
def test_backend_values_from_etcd_are_checked(raw):
    with pytest.raises(ValueError):
        _fields(raw)


def test_backend_values_take_defaults():
    assert _fields({}) == {"weight": 100, "state": "ready", "congestion_control": ""}


def test_a_compacted_watch_asks_for_a_full_read():
    with pytest.raises(Compacted):
        _watch_result({"result": {"compact_revision": "12"}})
    with pytest.raises(EtcdError):
        _watch_result({"result": {"canceled": True, "cancel_reason": "x"}})
    events = _watch_result({"result": {"events": [
        {"kv": {"key": "L2E=", "value": "MQ==", "mod_revision": "5"}},
        {"type": "DELETE", "kv": {"key": "L2I=", "mod_revision": "6"}}]}})
    assert [(e.deleted, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events] == [
        (False, "/a", b"1", 5), (True, "/b", b"", 6)]


def test_the_fleet_section_as_the_design_sketches_it():
    config = parse('fleet: {etcd: ["http://198.18.0.10:2379"], name: lb-a, '
                   'prefix: /l7lb/prod, probe_replicas: 2}\n')
    fleet = config.fleet
    assert (fleet.name, fleet.prefix, fleet.probe_replicas, fleet.lease_ttl) == \
        ("lb-a", "/l7lb/prod", 2, 3.0)
    assert parse("").fleet is None           # standalone by default
