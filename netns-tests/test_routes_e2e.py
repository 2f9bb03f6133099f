"""Routes end to end: requests chosen into backend groups by host, path,
method, header and query, and the routes' own answers and rewrites, through
the real balancer to real backends that report what they received."""

from __future__ import annotations

import json
import time

import pytest
from conftest import Client, balancer_config, lbctl, reload_and_wait
from load import Load
from topology import Topology

ROUTES = """
clusters:
  api: {{backends: [{{host: {b1}, port: 8000}}], balancer: {{algorithm: least_request}}}}
  static: {{backends: [{{host: {b2}, port: 8000}}], health: {{interval: 1s}}}}
  slow: {{backends: [{{host: {b2}, port: 8000}}]}}
routes:
  - {{name: healthz, match: {{path: {{exact: /healthz}}}},
     respond: {{status: 200, body: "fine\\n"}}}}
  - {{name: old, match: {{host: old.example.com}},
     redirect: {{status: 301, location: "https://new.example.com"}}}}
  - {{name: to-https, match: {{host: secure.example.com}},
     redirect: {{status: 308, scheme: https}}}}
  - {{name: api-host, match: {{host: "*.api.example.com"}}, cluster: api,
     set_headers: {{request: {{X-Via-Route: api-host}}, response: {{X-Served-By: l7lb}}}},
     remove_headers: {{request: [X-Secret], response: [X-Backend]}}}}
  - {{name: static, match: {{path: {{prefix: /static/}}}}, cluster: static,
     rewrite_prefix: /assets/}}
  - {{name: posts, match: {{path: {{prefix: /api/}}, method: [POST]}}, cluster: api}}
  - {{name: tenant, match: {{header: [{{name: X-Tenant, equals: blue}}]}}, cluster: api}}
  - {{name: debug, match: {{query: [{{name: debug, regex: "[0-9]+"}}]}}, cluster: static}}
  - {{name: users, match: {{path: {{regex: "/users/[0-9]+"}}}}, cluster: api}}
  - {{name: slow, match: {{path: {{prefix: /slow/}}}}, cluster: slow,
     timeouts: {{request: 300ms}}, retries: {{attempts: 0}}}}
"""


@pytest.fixture(scope="module")
def site():
    topo = Topology(["client", "lb", "b1", "b2", "b3"])
    try:
        for name in ("b1", "b2", "b3"):
            topo.python_backend(name, name)
        hosts = {k: topo.hosts[k] for k in ("b1", "b2")}
        topo.balancer("lb", balancer_config(topo, ["b3"], extra=ROUTES.format(**hosts)))
        yield topo
    finally:
        topo.close()


def ask(topo, path: str, host: str = "www.example.com", method: str = "GET",
        headers: dict | None = None):
    response, body = Client(topo).request(method, path, headers={"Host": host, **(headers or {})})
    return response, body


def backend(topo, path: str, **kw) -> str:
    """The name of the backend that answered."""
    response, body = ask(topo, path, **kw)
    assert response.status == 200, (response.status, body)
    return json.loads(body)["backend"]


def test_each_match_picks_its_group_and_the_rest_goes_to_default(site):
    assert backend(site, "/x", host="v1.api.example.com") == "b1"       # wildcard host
    assert backend(site, "/x", host="a.b.API.example.com:8080") == "b1"   # any depth, case, port
    assert backend(site, "/x", host="api.example.com") == "b3"          # not the bare domain
    assert backend(site, "/static/app.js") == "b2"
    assert backend(site, "/api/orders", method="POST") == "b1"
    assert backend(site, "/api/orders") == "b3"                         # GET: no route
    assert backend(site, "/", headers={"X-Tenant": "blue"}) == "b1"
    assert backend(site, "/", headers={"X-Tenant": "red"}) == "b3"
    assert backend(site, "/?debug=42") == "b2"
    assert backend(site, "/?debug=yes") == "b3"
    assert backend(site, "/users/17") == "b1"
    assert backend(site, "/users/17/photos") == "b3"                    # regex is anchored


def test_respond_and_redirect_are_answered_by_the_balancer(site):
    conn = Client(site).connection()
    try:
        conn.request("GET", "/healthz", headers={"Host": "x"})
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"fine\n")
        conn.request("GET", "/healthz", headers={"Host": "x"})   # the connection stays open
        assert conn.getresponse().read() == b"fine\n"
    finally:
        conn.close()
    response, _ = ask(site, "/a/b?c=1", host="old.example.com")
    assert response.status == 301
    assert response.getheader("Location") == "https://new.example.com/a/b?c=1"
    response, _ = ask(site, "/pay?x=1", host="secure.example.com")
    assert response.status == 308
    assert response.getheader("Location") == "https://secure.example.com/pay?x=1"


def test_rewrite_and_header_edits_on_both_sides(site):
    response, body = ask(site, "/static/css/site.css?v=3")
    assert json.loads(body)["path"] == "/assets/css/site.css?v=3"
    response, body = ask(site, "/", host="w.api.example.com", headers={"X-Secret": "s"})
    sent = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert sent.get("x-via-route") == "api-host" and "x-secret" not in sent
    assert response.getheader("X-Served-By") == "l7lb"
    assert response.getheader("X-Backend") is None                      # removed
    response, _ = ask(site, "/static/x")
    assert response.getheader("X-Backend") == "b2"                      # other routes keep it


def test_a_route_timeout_applies_to_its_route_only(site):
    started = time.monotonic()
    response, body = ask(site, "/slow/800")             # the "slow" route: 300 ms, no retry
    assert response.status == 504 and time.monotonic() - started < 0.7, body
    response, body = ask(site, "/slow/800?debug=1")     # the same backend by another route
    assert response.status == 200, body


def test_access_log_names_route_and_group(site):
    ask(site, "/static/log-me")
    deadline = time.monotonic() + 3
    while True:                                        # workers flush their logs on a timer
        lines = [json.loads(line) for line in open(site.tmp / "balancer.log")
                 if '"event":"request"' in line and "log-me" in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines and lines[-1]["route"] == "static" and lines[-1]["cluster"] == "static"
    assert lines[-1]["path"] == "/assets/log-me"        # as sent to the backend


def test_routes_default_none_answers_404(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.balancer("lb", balancer_config(topo, ["b1"], extra=(
        "routes_default: none\n"
        "routes: [{match: {path: {prefix: /app/}}}]\n")))
    assert Client(topo).request("GET", "/app/x")[0].status == 200
    response, body = Client(topo).request("GET", "/other")
    assert response.status == 404 and b"no route" in body


def test_groups_are_checked_and_broken_on_their_own(topology):
    """The same address in two groups is two backends; a dead backend in one
    group costs the other group nothing."""
    topo = topology(["client", "lb", "b1", "b2", "b3"])
    procs = {name: topo.python_backend(name, name) for name in ("b1", "b2", "b3")}
    extra = (f"clusters:\n"
             f"  api: {{backends: [{{host: {topo.hosts['b1']}, port: 8000}}, "
             f"{{host: {topo.hosts['b2']}, port: 8000}}], health: {{interval: 100ms}}}}\n"
             f"  static: {{backends: [{{host: {topo.hosts['b3']}, port: 8000}}], "
             f"breaker: {{consecutive_failures: 2}}}}\n"
             "routes: [{match: {path: {prefix: /api/}}, cluster: api},\n"
             "         {match: {path: {prefix: /static/}}, cluster: static}]\n")
    topo.balancer("lb", balancer_config(topo, ["b3"], extra=extra)
                  .replace("workers: 1", "workers: 2"))
    rows = json.loads(lbctl(topo, "backends", "--json").stdout)
    b3 = f"{topo.hosts['b3']}:8000"
    assert sorted(r["cluster"] for r in rows if r["name"] == b3) == ["default", "static"]
    procs["b1"].kill()
    with Load(topo, clients=4, seconds=3, path="/api/x") as api, \
            Load(topo, clients=2, seconds=3, path="/static/x") as static:
        time.sleep(3)
    assert set(static.statuses) == {200} and len(static.statuses) > 20
    assert set(api.statuses) == {200}, api.failures     # retried on b2, then b1 is down
    rows = {(r["cluster"], r["name"]): r for r in json.loads(
        lbctl(topo, "backends", "--json").stdout)}
    assert rows[("api", f"{topo.hosts['b1']}:8000")]["health"] == "down"
    assert rows[("static", b3)]["health"] != "down" and rows[("default", b3)]["requests"] == 0
    health = lbctl(topo, "health", f"{topo.hosts['b1']}:8000", "--cluster", "api", "--json")
    assert json.loads(health.stdout)[0]["health"] == "down", health.stderr
    wrong = lbctl(topo, "health", f"{topo.hosts['b1']}:8000")      # not in the default group
    assert wrong.returncode == 1 and "no backend" in wrong.stderr


def test_a_reload_changes_routes_under_load_without_a_failed_request(topology):
    topo = topology(["client", "lb", "b1", "b2"])
    for name in ("b1", "b2"):
        topo.python_backend(name, name)
    clusters = (f"clusters: {{api: {{backends: [{{host: {topo.hosts['b2']}, port: 8000}}]}}}}\n")
    before = balancer_config(topo, ["b1"], extra=clusters + "routes: []\n")
    lb = topo.balancer("lb", before.replace("workers: 1", "workers: 2"))
    assert backend(topo, "/api/x") == "b1"
    with Load(topo, clients=6, seconds=4, path="/api/x") as load:
        time.sleep(1.0)
        (topo.tmp / "balancer.yaml").write_text(before.replace(
            "routes: []", "routes: [{name: api, match: {path: {prefix: /api/}}, cluster: api}]")
            .replace("workers: 1", "workers: 2"))
        reload_and_wait(topo, lb, 2)
        time.sleep(1.0)
        assert backend(topo, "/api/y") == "b2" and backend(topo, "/other") == "b1"
    assert len(load.statuses) > 50 and set(load.statuses) == {200}, load.failures
    shown = json.loads(lbctl(topo, "routes", "--json").stdout)
    assert shown[0]["name"] == "api" and shown[0]["action"] == "cluster api"
    assert shown[0]["requests"] > 0
    table = lbctl(topo, "routes").stdout
    assert "cluster api" in table and '{"path": {"prefix": "/api/"}}' in table, table
