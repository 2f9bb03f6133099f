"""Configuration: the seed's example loads; each kind of error names its key,
its line, and makes `lbctl check` exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.config import ConfigError, Duration, Rate, load, parse, warnings

ROOT = Path(__file__).resolve().parent.parent


def test_seed_example_loads_unchanged():
    config = load(str(ROOT / "config.example.yaml"))
    assert config.balancer.port == 8080
    assert config.balancer.health_check_interval == 10.0
    assert config.balancer.failure_threshold == 8.0
    assert [(b.host, b.port, b.weight) for b in config.backends] == [
        ("backend1.example.com", 8081, 100), ("backend2.example.com", 8082, 100)]
    assert (config.pool.max_idle, config.pool.max_active, config.pool.idle_timeout) == (100, 1000, 60.0)


def test_defaults():
    config = parse("")
    assert config.balancer.mode == "http" and config.balancer.relay == "auto"
    assert config.timeouts.connect == 2.0 and config.timeouts.request == 30.0
    assert config.admin.socket == "/run/l7lb/admin.sock"
    assert config.breaker.consecutive_failures == 5 and config.breaker.max_requests is None
    assert config.timeouts.client_write == 60.0 and config.timeouts.total is None


@pytest.mark.parametrize("text, message", [
    ("balancer:\n  port: [1\n", "f.yaml:3: invalid YAML: expected ',' or ']'"),
    ("balancer:\n  prot: 1\n", "f.yaml:2: balancer.prot: unknown key"),
    ("balancer:\n  port: eighty\n", "f.yaml:2: balancer.port: expected `int`, got `str`"),
    ("balancer:\n  port: 70000\n", "f.yaml:2: balancer.port: expected `int` <= 65535"),
    ("balancer:\n  mode: udp\n", "f.yaml:2: balancer.mode: expected one of http, tcp; got 'udp'"),
    ("pool:\n  idle_timeout: soon\n",
     "f.yaml:2: pool.idle_timeout: expected a duration such as 500ms, 10s or 2m, got 'soon'"),
    ("timeouts: {connect: -1s}\n", "f.yaml:1: timeouts.connect: expected a duration"),
    ("backends:\n  - {host: a, port: 1}\n  - {host: A, port: 1}\n",
     "f.yaml:3: backends[1]: duplicate backend A:1 (already backends[0])"),
    ("backends:\n  - host: a\n", "f.yaml:2: backends[0]: Object missing required field `port`"),
    ("backends:\n  - {host: a, port: 1, weight: -5}\n", "f.yaml:2: backends[0].weight: expected `int` >= 0"),
    ("balancer: {port: 1}\nbalancer: {port: 2}\n", "f.yaml:2: balancer: duplicate key"),
    ("- just\n- a list\n", "f.yaml: (top level): expected a mapping of sections"),
    ("backends:\n  - {host: a, port: 1, congestion_control: vegas9}\n",
     "f.yaml:2: backends[0].congestion_control: unknown algorithm 'vegas9'; available: "),
    ("congestion:\n  tunables:\n    lb_aimd: {speed: 2}\n",
     "f.yaml:3: congestion.tunables.lb_aimd.speed: lb_aimd has no tunable 'speed'"),
    ("congestion:\n  tunables:\n    lb_delay: {max_decrease: 100}\n",
     "f.yaml:3: congestion.tunables.lb_delay.max_decrease: lb_delay.max_decrease must be an "
     "integer from 1 to 99"),
    ("congestion:\n  tunables:\n    cubic: {x: 1}\n",
     "f.yaml:3: congestion.tunables.cubic: no BPF algorithm 'cubic'; ours are lb_aimd, lb_delay"),
    ("congestion: {pacer: {min_rate: 10Mbit, start_rate: 1Mbit}}\n",
     "f.yaml:1: congestion.pacer: needs min_rate <= start_rate <= max_rate"),
    ("congestion: {pacer: {max_rate: fast}}\n",
     "f.yaml:1: congestion.pacer.max_rate: expected a rate such as 500kbit, 50Mbit or 1Gbit"),
    ("congestion: {pacer: {interval: 5ms}}\n",
     "f.yaml:1: congestion.pacer.interval: must be 10ms to 10s"),
    ("congestion: {bpf: maybe}\n", "f.yaml:1: congestion.bpf: expected one of auto, off"),
    ("breaker: {window: 10, min_calls: 20}\n",
     "f.yaml:1: breaker.min_calls: 20 is more than breaker.window (10)"),
    ("breaker: {open_for: 10s, max_open_for: 5s}\n",
     "f.yaml:1: breaker.max_open_for: must be at least breaker.open_for"),
    ("breaker: {failure_on: [5xx, 4xx]}\n",
     "f.yaml:1: breaker.failure_on[1]: expected one of connect, reset, timeout, 5xx, 503"),
    ("breaker: {failure_on: []}\n", "f.yaml:1: breaker.failure_on: names no failure"),
    ("balancer: {workers: 4}\nbreaker: {max_requests: 3}\n",
     "f.yaml:2: breaker.max_requests: 3 is less than the 4 workers"),
    ("limits: {body_bytes: -1}\n", "f.yaml:1: limits.body_bytes: expected `int` >= 0"),
    ("routes:\n  - {match: {path: {prefix: /x}}, cluster: apii}\n",
     "f.yaml:2: routes[0].cluster: no cluster 'apii'; known: default"),
    ("routes:\n  - {match: {path: {regex: '/a('}}}\n",
     "f.yaml:2: routes[0].match.path.regex: invalid regex: missing ), unterminated subpattern"),
    ("routes:\n  - {name: a}\n  - {name: a}\n",
     "f.yaml:3: routes[1].name: duplicate route name 'a' (already routes[0])"),
    ("routes:\n  - {respond: {status: 200}, redirect: {location: /x}}\n",
     "f.yaml:2: routes[0]: give one of cluster, redirect, respond, not redirect and respond"),
    ("routes:\n  - {match: {path: {exact: /a}}, rewrite_prefix: /b/}\n",
     "f.yaml:2: routes[0].rewrite_prefix: needs match.path.prefix"),
    ("clusters: {api: {backends: [], pool: {max_idle: lots}}}\n",
     "f.yaml:1: clusters.api.pool.max_idle: expected `int`"),
    ('fleet: {etcd: ["http://198.18.0.10:2379"], lease_ttl: 1s}\n',
     "f.yaml:1: fleet.lease_ttl: must be from 2s (etcd's shortest lease) to 1h"),
    ("fleet: {etcd: []}\n", "f.yaml:1: fleet.etcd: expected `array` of length >= 1"),
    ("routes:\n  - {match: {host: a.test}, redirect: {status: 308}}\n",
     "f.yaml:2: routes[0].redirect: give location or scheme (one)"),
    ('fleet: {etcd: ["http://a:2379"], tls: {ca: ca.pem}}\n',
     "f.yaml:1: fleet.etcd: fleet.tls needs https:// endpoints"),
    ('fleet: {etcd: ["http://a:2379"], user: lb}\n',     # password is not written: its parent's line
     "f.yaml:1: fleet.password: user and password go together"),
    # Inside a group, the merged sections are checked as the top-level ones are.
    ("clusters:\n  x:\n    backends: [{host: a, port: 1}]\n    breaker: {min_calls: 500}\n",
     "f.yaml:4: clusters.x.breaker.min_calls: 500 is more than breaker.window (100)"),
    ("breaker: {min_calls: 50}\nclusters:\n  x:\n    breaker: {window: 10}\n",
     "f.yaml:4: clusters.x.breaker.window: 50 is more than breaker.window (10)"),
    ("clusters: {x: {breaker: {failure_on: []}}}\n",
     "f.yaml:1: clusters.x.breaker.failure_on: names no failure"),
    ("clusters:\n  x:\n    backends:\n      - {host: a, port: 1}\n      - {host: a, port: 1}\n",
     "f.yaml:5: clusters.x.backends[1]: duplicate backend a:1 (already backends[0])"),
    ("clusters: {x: {health: {interval: 1ms}}}\n",
     "f.yaml:1: clusters.x.health.interval: must be at least 10ms"),
    ("clusters: {x: {health: {timeout: 0s}}}\n",
     "f.yaml:1: clusters.x.health.timeout: must be at least 1ms"),
    ("clusters: {x: {health: {expect: '200-100'}}}\n",
     "f.yaml:1: clusters.x.health.expect: 200-100 is not a range"),
    ("clusters: {x: {breaker: {open_for: 1ms}}}\n",
     "f.yaml:1: clusters.x.breaker.open_for: must be at least 10ms"),
    ("balancer: {workers: 4}\nclusters: {x: {breaker: {max_connections: 2}}}\n",
     "f.yaml:2: clusters.x.breaker.max_connections: 2 is less than the 4 workers"),
    ("clusters:\n  x:\n    backends:\n      - {host: a, port: 1, congestion_control: vegas9}\n",
     "f.yaml:4: clusters.x.backends[0].congestion_control: unknown algorithm 'vegas9'"),
    # Sections that do not fit together.
    ("breaker: {half_open_calls: 30}\n",
     "f.yaml:1: breaker.half_open_calls: 30 is more than breaker.min_calls (20)"),
    ("clusters: {x: {breaker: {min_calls: 2, half_open_calls: 3}}}\n",
     "f.yaml:1: clusters.x.breaker.half_open_calls: 3 is more than breaker.min_calls (2)"),
    ("timeouts: {total: 5s}\npool: {connect_timeout: 5s}\n",
     "f.yaml:2: pool.connect_timeout: 5s never fires: timeouts.total (5s) ends the exchange"),
    ("timeouts: {total: 5s}\nclusters: {x: {retries: {per_try_timeout: 10s}}}\n",
     "f.yaml:2: clusters.x.retries.per_try_timeout: 10s never fires: timeouts.total (5s)"),
    ("timeouts: {total: 1s}\npool: {queue_timeout: 2s}\n",
     "f.yaml:2: pool.queue_timeout: 2s never fires"),
    ("routes:\n  - {timeouts: {request: 5s, total: 5s}}\n",
     "f.yaml:2: routes[0].timeouts.request: 5s never fires: the total (5s) ends the exchange"),
    ("timeouts: {total: 3s}\nroutes:\n  - {retries: {per_try_timeout: 4s}}\n",
     "f.yaml:3: routes[0].retries.per_try_timeout: 4s never fires: the total (3s)"),
])


def test_errors_name_key_and_line(text, message):
    with pytest.raises(ConfigError) as caught:
        parse(text, "f.yaml")
    assert str(caught.value).startswith(message), str(caught.value)

def test_groups_override_the_top_level_sections_key_by_key():
    config = parse("health: {interval: 5s, rise: 4}\n"
                   "clusters: {api: {backends: [{host: a, port: 1}], health: {interval: 1s},"
                   " balancer: {algorithm: maglev}}}\n")
    api = config.group("api")
    assert api.health.interval == 1.0 and api.health.rise == 4      # rise inherited
    assert config.balancer_of("api").algorithm == "maglev"
    assert config.group("default").health.interval == 5.0

def test_defaults_above_the_total_are_left_alone():
    """timeouts.total alone is fine: connect (2s), request (30s) and the queue
    (5s) are defaults, capped by the total, not values the file set."""
    config = parse("timeouts: {total: 1s}\n", "f.yaml")
    assert config.timeouts.total == 1.0


def test_a_shadowed_route_is_a_warning():
    config = parse("routes:\n  - {name: all, match: {path: {prefix: /}}}\n"
                   "  - {name: s, match: {host: a.example.com, path: {prefix: /s/}}}\n"
                   "  - {name: w, match: {host: '*.example.org'}}\n"
                   "  - {name: x, match: {host: b.example.org, method: [GET]}}\n")
    assert warnings(config) == [
        "routes[1] (s) is never reached: routes[0] (all) matches every request it would",
        "routes[2] (w) is never reached: routes[0] (all) matches every request it would",
        "routes[3] (x) is never reached: routes[0] (all) matches every request it would"]
    assert warnings(parse("routes:\n  - {match: {host: '*.example.org'}}\n"
                          "  - {match: {host: example.org}}\n")) == []



@pytest.mark.parametrize("text, seconds", [
    ("250ms", 0.25), ("10s", 10.0), ("2m", 120.0), ("1.5s", 1.5), (3, 3.0), ("7", 7.0)])
def test_duration_units(text, seconds):
    assert Duration.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, bits", [
    ("50Mbit", 50e6), ("500kbit", 500e3), ("1.5Gbit", 1.5e9), ("64000", 64e3), (1e6, 1e6)])
def test_rate_units(text, bits):
    assert Rate.parse(text) == pytest.approx(bits)


def test_congestion_choices_load():
    config = parse("backends:\n  - {host: a, port: 1, congestion_control: lb_delay, "
                   "client_side: true}\n  - {host: b, port: 1, congestion_control: pacer}\n"
                   "congestion: {tunables: {lb_delay: {target_us: 500}}, "
                   "pacer: {start_rate: 20Mbit}}\n")
    assert [b.congestion_control for b in config.backends] == ["lb_delay", "pacer"]
    assert config.congestion.pacer.start_rate.bytes_per_second == 2_500_000


@given(st.text(max_size=12))
def test_duration_parse_accepts_or_raises_valueerror(text):
    try:
        value = Duration.parse(text)
    except ValueError:
        return
    assert 0 <= value <= 86400


def lbctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lbctl.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=30)


def test_check_accepts_example():
    result = lbctl("check", "-c", "config.example.yaml")
    assert result.returncode == 0
    assert "configuration OK (2 backends" in result.stdout


@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_config_exits_2_with_one_clear_line(tmp_path, command):
    bad = tmp_path / "bad.yaml"
    bad.write_text("balancer:\n  port: 8080\n  workers: many\n")
    result = lbctl(command, "-c", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"lbctl: configuration error: {bad}:3: balancer.workers: expected one of auto; got 'many'")


def test_missing_file_exits_2(tmp_path):
    result = lbctl("check", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read: No such file or directory" in result.stderr
