"""Access lines in HAProxy's httplog and nginx's combined formats, written by
a running balancer and read by each format's documented grammar
(dataplane/testing/log_grammars.py): one line per request, on the fast lane,
the general path and the balancer's own answers."""

from __future__ import annotations

import time

import pytest

from conftest import balancer_config
from dataplane.testing.log_grammars import COMBINED_LINE, HTTPLOG_LINE
from topology import HTTPConnection

SITE = ("clusters:\n  empty: {backends: []}\n"
        "routes:\n  - {match: {path: {prefix: /nowhere}}, cluster: empty}\n")


def lines_of(lb, grammar, count: int, timeout: float = 5.0) -> list:
    """The balancer log's first ``count`` lines that the grammar reads."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in map(grammar.match, open(lb.log_path, errors="replace").read()
                                .splitlines()) if m]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def send_three(topo) -> str:
    """A GET on the lane, a POST on the general path, a 503 of the balancer's own."""
    conn = HTTPConnection(topo, "client", "lb", 8080)
    for method, path, headers, body in (
            ("GET", "/lane?x=1", {"User-Agent": "probe/1.0", "Referer": "http://r.example/"}, None),
            ("POST", "/general", {}, b"hello"),
            ("GET", "/nowhere", {}, None)):
        conn.request(method, path, body=body, headers=headers)
        conn.getresponse().read()
    return topo.hosts["b1"] + ":8000"


@pytest.mark.parametrize("fmt", ["httplog", "combined"])
def test_every_request_is_one_line_in_the_formats_grammar(topology, fmt):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"], extra=(
        SITE + f"log: {{access_format: {fmt}, format: json}}\n")))
    backend = send_three(topo)
    client = topo.hosts["client"]
    if fmt == "httplog":
        found = lines_of(lb, HTTPLOG_LINE, 3)
        assert [(m["ci"], m["b"], m["s"], m["ST"], m["r"]) for m in found] == [
            (client, "default", backend, "200", "GET /lane?x=1 HTTP/1.1"),
            (client, "default", backend, "200", "POST /general HTTP/1.1"),
            (client, "empty", "<NOSRV>", "503", "GET /nowhere HTTP/1.1")]
        assert all(int(m["Ta"]) >= int(m["Tc"]) >= 0 and m["cp"] != "0" for m in found)
        assert int(found[0]["B"]) > 0 and found[0]["tsc"] == "----"
    else:
        found = lines_of(lb, COMBINED_LINE, 3)
        assert [(m["remote_addr"], m["status"], m["request"]) for m in found] == [
            (client, "200", "GET /lane?x=1 HTTP/1.1"), (client, "200", "POST /general HTTP/1.1"),
            (client, "503", "GET /nowhere HTTP/1.1")]
        assert (found[0]["http_user_agent"], found[0]["http_referer"]) == \
            ("probe/1.0", "http://r.example/")
        assert found[1]["http_user_agent"] == "-"
    assert len(found) == 3     # and no other line the grammar reads
