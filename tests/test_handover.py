"""What an upgrade carries (sans-IO parts): the hand-over's encoding, which
backend set a new process takes, the command line it is started with, and
the health, phi and breaker cores continuing another process's state."""

from __future__ import annotations

import math

import msgspec
import pytest

from dataplane.breaker.machine import Breaker, BreakerRules, Phase
from dataplane.channel.messages import BackendState
from dataplane.config import parse
from dataplane.control.carry import backends_to_keep
from dataplane.control.upgrade import successor_argv
from dataplane.handover.carried import BreakerCarry, Carried, HostCarry, decode, encode
from dataplane.health.phi import PhiDetector
from dataplane.health.verdict import Health, HealthRules, HostHealth

CONFIG = """balancer: {port: 8080}
backends:
  - {host: 198.18.0.4, port: 8000}
  - {host: 198.18.0.5, port: 8000}
"""


def carried(**fields) -> Carried:
    return Carried("0.1.0", 123, "0.0.0.0:8080", **fields)


def test_the_hand_over_survives_encoding_and_a_newer_sender():
    sent = carried(slots=[0, 1], metrics=True,
                   backends=[BackendState("198.18.0.4", 8000, 100, "drain", health="down")],
                   health={"198.18.0.4:8000": HostCarry("down", 12.5, 0, 2,
                                                      [1.0, 1.1], 11.0, 11.5)},
                   breakers={"198.18.0.4:8000": BreakerCarry("open", 2, 99.0)},
                   tickets=[b"k" * 80, b"l" * 80], fleet_lease=7,
                   tunables={"lb_delay": {"target_us": 500}})
    assert decode(encode(sent)) == sent
    newer = msgspec.json.decode(encode(sent))
    newer["something_new"] = {"a": 1}       # a later release adds a field: ignored
    del newer["fleet_lease"]                # and may leave one out: its default
    got = decode(msgspec.json.encode(newer).decode())
    assert got.fleet_lease == 0 and got.health == sent.health
    with pytest.raises(msgspec.ValidationError):
        decode('{"version": "x"}')


def test_the_same_file_keeps_the_run_time_set_another_file_wins_with_known_states():
    config = parse(CONFIG)
    added = BackendState("198.18.0.9", 8000, 50, health="up")
    drained = BackendState("198.18.0.4", 8000, 100, "drain", health="down",
                           breaker="half_open", lease=3, permits={0: 1})
    kept = BackendState("198.18.0.5", 8000, 100, health="up")
    gone = BackendState("198.18.0.6", 1, 1, cluster="gone")     # a group no longer there
    sent = carried(backends=[drained, kept, added, gone],
                   file_backends=["198.18.0.4:8000", "198.18.0.5:8000"])
    same = backends_to_keep(config, sent, in_fleet=False)
    assert [(b.host, b.state, b.weight) for b in same] == [
        ("198.18.0.4", "drain", 100), ("198.18.0.5", "ready", 100), ("198.18.0.9", "ready", 50)]
    assert same[0].breaker == "open" and same[0].lease == 0 and same[0].permits == {}
    other = parse(CONFIG.replace("198.18.0.5", "198.18.0.7"))
    taken = backends_to_keep(other, sent, in_fleet=False)
    assert [(b.host, b.state, b.health) for b in taken] == [
        ("198.18.0.4", "drain", "down"), ("198.18.0.7", "ready", "unknown")]
    assert len(backends_to_keep(other, sent, in_fleet=True)) == 3      # etcd's set stays


@pytest.mark.parametrize("argv, expected", [
    (["python", "lbctl", "run", "-c", "a.yaml"], ["python", "lbctl", "run", "-c", "b.yaml"]),
    (["python", "lbctl", "--socket", "s", "run", "--config", "a.yaml"],
     ["python", "lbctl", "--socket", "s", "run", "--config", "b.yaml"]),
    (["python", "-m", "lbctl", "run", "--config=a.yaml"],
     ["python", "-m", "lbctl", "run", "--config=b.yaml"]),
    (["python", "lbctl", "demo"], None),
])
def test_the_new_process_runs_the_same_command_with_its_file(argv, expected):
    assert successor_argv(argv, "b.yaml") == expected


def test_health_and_phi_continue_where_the_other_process_left_them():
    host = HostHealth(HealthRules(threshold=8.0), PhiDetector(window=3), now=100.0)
    host.resume(Health.DOWN, 90.0, 0, 2)
    host.detector.resume([1.0, 1.0, 1.0, 1.0, 5.0], 99.0, 99.5)
    assert host.state is Health.DOWN and host.since == 90.0 and host.timeouts == 2
    assert list(host.detector.intervals) == [1.0, 1.0, 5.0]     # the window's size holds
    assert math.isclose(host.detector.mean(), 7 / 3)
    assert host.check(200.0, 0.0) is None                       # down stays down


def test_a_breaker_continues_open_and_half_open_opens_again_under_new_permits():
    rules = BreakerRules()
    closed, opened, trial = Breaker(rules), Breaker(rules), Breaker(rules)
    closed.resume(10.0, Phase.CLOSED, 0, 0.0)
    opened.resume(10.0, Phase.OPEN, 3, 25.0)
    trial.resume(10.0, Phase.HALF_OPEN, 1, 12.0)
    assert closed.phase is Phase.CLOSED
    assert opened.phase is Phase.OPEN and opened.until == 25.0 and opened.trips == 3
    assert not opened.poll(24.9) and opened.poll(25.0)
    assert trial.phase is Phase.OPEN and trial.poll(10.0)        # half-open again at once
