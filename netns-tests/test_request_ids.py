"""Request IDs end to end: what the backend reads, what the client gets
back, what the access line says, on the fast lane and the general path, and
on the balancer's own answers."""

from __future__ import annotations

import json
import re
import time

from conftest import balancer_config
from topology import HTTPConnection

HEX = re.compile(r"^[0-9a-f]{32}$")
EMPTY_GROUP = ("clusters:\n  empty: {backends: []}\n"
               "routes:\n  - {match: {path: {prefix: /nowhere}}, cluster: empty}\n")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def logged(lb, count: int, timeout: float = 5.0) -> list[dict]:
    """The first ``count`` request lines of the balancer's log (written out
    within 250 ms of each request)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in open(lb.log_path, errors="replace")
                 if '"event":"request"' in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def site(topology, extra: str, h2c: bool = False):
    """A balancer in front of one Python backend (taking h2c too if asked),
    and a client connection to it."""
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    config = balancer_config(topo, ["b1"], extra=extra)
    if h2c:
        config = config.replace("workers: 1}", "workers: 1, http2: {cleartext: true}}", 1)
    lb = topo.balancer("lb", config)
    return topo, lb, HTTPConnection(topo, "client", "lb", 8080)


def sent_id(body: bytes, name: str = "X-Request-Id") -> str | None:
    """The ID the backend read (its answer lists the headers it got)."""
    return dict(json.loads(body)["headers"]).get(name)


def exchange(conn: HTTPConnection, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    chunked = (headers or {}).get("Transfer-Encoding") == "chunked"
    conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_each_request_gets_a_new_id_that_the_backend_and_the_log_see(topology):
    topo, lb, conn = site(topology, EMPTY_GROUP)
    seen = []
    context = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for _ in range(3):         # simple GETs: the fast lane
        status, headers, body = exchange(conn, "GET", "/lane", {"traceparent": context})
        assert status == 200 and "X-Request-Id" not in headers    # echo is off
        seen.append(sent_id(body))
        assert sent_id(body, "traceparent") == context     # tracing off: passed unchanged
    # A chunked body (the general path), and a client's own ID (replaced: not trusted).
    status, _, body = exchange(conn, "POST", "/general", {"Transfer-Encoding": "chunked"},
                               iter([b"hello"]))
    seen.append(sent_id(body))
    status, _, body = exchange(conn, "GET", "/spoofed", {"X-Request-Id": "client-made"})
    pairs = json.loads(body)["headers"]
    sent = dict(pairs)
    assert sent["X-Request-Id"] != "client-made"
    assert [name for name, _ in pairs].count("X-Request-Id") == 1
    seen.append(sent["X-Request-Id"])
    # The balancer's own answer: 503, no backend in the group.
    status, headers, _ = exchange(conn, "GET", "/nowhere")
    assert status == 503
    seen.append(headers["X-Request-Id"])

    assert all(HEX.match(value) for value in seen), seen
    assert len(set(seen)) == len(seen)
    lines = logged(lb, 6)
    assert [line["request_id"] for line in lines] == seen
    assert [line["path"] for line in lines] == ["/lane"] * 3 + ["/general", "/spoofed",
                                                                 "/nowhere"]


def test_a_trusted_id_is_kept_and_echoed_and_a_new_one_is_a_uuid(topology):
    _, lb, conn = site(topology, "request_id: {header: X-Trace-Me, trust_incoming: true, "
                                 "echo: true, format: uuid}\n")
    status, headers, body = exchange(conn, "GET", "/mine", {"X-Trace-Me": "abc-123"})
    assert status == 200 and headers["X-Trace-Me"] == "abc-123"
    assert sent_id(body, "X-Trace-Me") == "abc-123"
    status, headers, body = exchange(conn, "GET", "/new")        # the lane, echoing
    made = headers["X-Trace-Me"]
    assert UUID4.match(made) and sent_id(body, "X-Trace-Me") == made
    status, headers, body = exchange(conn, "POST", "/posted", body=b"x" * 10)
    assert UUID4.match(headers["X-Trace-Me"])
    # A trusted ID that would break a log line is replaced.
    status, headers, body = exchange(conn, "GET", "/quoted", {"X-Trace-Me": 'a"b'})
    assert UUID4.match(headers["X-Trace-Me"])
    lines = logged(lb, 4)
    assert [line["request_id"] for line in lines] == [
        "abc-123", made, lines[2]["request_id"], headers["X-Trace-Me"]]


def test_request_ids_can_be_turned_off(topology):
    _, lb, conn = site(topology, "request_id: {enabled: false}\n")
    status, _, body = exchange(conn, "GET", "/off", {"X-Request-Id": "passes"})
    assert sent_id(body) == "passes"
    status, _, body = exchange(conn, "GET", "/none")
    assert sent_id(body) is None
    assert all("request_id" not in line for line in logged(lb, 2))


def test_http2_requests_get_ids_on_the_lane_and_in_own_answers(topology):
    topo, lb, _ = site(topology, EMPTY_GROUP, h2c=True)
    base = f"http://{topo.hosts['lb']}:8080"

    def curl(path: str, *more: str) -> str:
        return topo.run("client", ["curl", "-s", "--http2-prior-knowledge", *more,
                                   base + path]).stdout.decode()
    lane = sent_id(curl("/h2").encode())
    general = sent_id(curl("/h2body", "-d", "x=1").encode())
    answer = curl("/nowhere", "-D", "-", "-o", "/dev/null")
    own = re.search(r"x-request-id: ([0-9a-f]{32})", answer)
    assert "HTTP/2 503" in answer and own, answer
    assert HEX.match(lane) and HEX.match(general)
    lines = logged(lb, 3)
    assert [(line["proto"], line["request_id"]) for line in lines] == [
        ("h2c", lane), ("h2c", general), ("h2c", own[1])]


def test_a_429_of_the_per_client_rate_carries_an_id_on_both_paths(topology):
    _, _, conn = site(topology, "limits: {per_client_rate: 1}\n")
    assert exchange(conn, "GET", "/first")[0] == 200
    answers = []
    for method, body in (("GET", None), ("POST", iter([b"x" * 10]))):   # the lane; chunked
        conn.close()
        status, headers, _ = exchange(conn, method, "/again", body=body)
        answers.append((status, bool(HEX.match(headers.get("X-Request-Id", "")))))
    assert answers == [(429, True), (429, True)]
