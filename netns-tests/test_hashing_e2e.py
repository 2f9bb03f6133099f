"""Consistent hashing end to end: a header keeps a user on one backend, and
removing a backend (reload) moves only the users it had."""

from __future__ import annotations

import json

import pytest
from conftest import Client, balancer_config, lbctl, reload_and_wait


@pytest.mark.parametrize("algorithm", ["ring_hash", "maglev"])
def test_header_key_is_sticky_and_removal_moves_only_its_keys(topology, algorithm):
    topo = topology(["client", "lb", "b1", "b2", "b3"])
    for name in ("b1", "b2", "b3"):
        topo.python_backend(name, name)
    hashing = f"algorithm: {algorithm}, hash_key: 'header:X-User'"
    config = balancer_config(topo, ["b1", "b2", "b3"]).replace("workers: 1", "workers: 2, " + hashing)
    lb = topo.balancer("lb", config)
    client = Client(topo)

    def backend_for(user: str) -> str:
        body = client.request("GET", "/h", headers={"X-User": user})[1]
        return json.loads(body)["backend"]

    users = [f"user{i}" for i in range(30)]
    first = {user: backend_for(user) for user in users}
    assert set(first.values()) == {"b1", "b2", "b3"}
    for user in users:                       # new connections, either worker
        assert backend_for(user) == first[user]
        assert backend_for(user) == first[user]
    (topo.tmp / "balancer.yaml").write_text(
        balancer_config(topo, ["b1", "b3"]).replace("workers: 1", "workers: 2, " + hashing))
    reload_and_wait(topo, lb, 2)
    after = {user: backend_for(user) for user in users}
    for user in users:
        if first[user] == "b2":
            assert after[user] in {"b1", "b3"}
        elif algorithm == "ring_hash":
            assert after[user] == first[user], user
    if algorithm == "maglev":    # a little extra disruption is Maglev's trade-off
        kept = sum(after[u] == first[u] for u in users if first[u] != "b2")
        assert kept >= 0.8 * sum(1 for u in users if first[u] != "b2")


@pytest.mark.parametrize("algorithm", ["round_robin", "random", "least_request",
                                       "ring_hash", "maglev", "bounded_load"])
def test_drained_and_maintained_backends_get_no_new_requests(topology, algorithm):
    topo = topology(["client", "lb", "b1", "b2", "b3"])
    for name in ("b1", "b2", "b3"):
        topo.python_backend(name, name)
    hashing = f"algorithm: {algorithm}, hash_key: 'header:X-User'"
    topo.balancer("lb", balancer_config(topo, ["b1", "b2", "b3"])
                  .replace("workers: 1", "workers: 2, " + hashing))
    client = Client(topo)
    b2 = f"{topo.hosts['b2']}:8000"
    hashed = algorithm in ("ring_hash", "maglev", "bounded_load")

    def backend_for(user: str) -> str:
        response, body = client.request("GET", "/h", headers={"X-User": user})
        assert response.status == 200, body
        return json.loads(body)["backend"]

    users = [f"user{i}" for i in range(30)]
    first = {user: backend_for(user) for user in users}
    assert "b2" in first.values()
    for state in ("drain", "maint"):
        assert lbctl(topo, "backend", "set", b2, "state", state).returncode == 0
        now = {user: backend_for(user) for user in users}
        assert "b2" not in now.values(), state
        assert set(now.values()) == {"b1", "b3"}
        if hashed:       # only b2's users moved
            assert all(now[u] == first[u] for u in users if first[u] != "b2"), state
    assert lbctl(topo, "backend", "set", b2, "state", "ready").returncode == 0
    back = {user: backend_for(user) for user in users}
    if hashed:
        assert back == first
    else:
        assert "b2" in back.values()
