"""HTTP mode end to end: a client namespace, the balancer (``lbctl run``) in its
own namespace, our Python backend and Debian's nginx behind it."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from conftest import Client, balancer_config, two_backend_site, websocket_echo
from topology import Topology

from dataplane.testing.backend import PATTERN


@pytest.fixture(scope="module")
def site():
    with two_backend_site() as topo:
        yield topo


@pytest.fixture
def client(site: Topology) -> Client:
    return Client(site)


def report(body: bytes) -> dict:
    return json.loads(body)


def split_responses(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) of each Content-Length response in a byte stream."""
    out = []
    while raw:
        head, raw = raw.split(b"\r\n\r\n", 1)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        out.append((head, raw[:length]))
        raw = raw[length:]
    return out


def expected_bytes(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def test_round_robin_spreads_requests_over_both_backends(client):
    seen = [report(client.request("GET", f"/rr/{i}")[1])["backend"] for i in range(6)]
    assert sorted(seen) == ["b1"] * 3 + ["b2"] * 3
    assert all(a != b for a, b in zip(seen, seen[1:])), seen   # smooth: interleaved


def test_forwarding_headers_and_hop_by_hop_removal(client, site):
    response, body = client.request("GET", "/h", headers={
        "X-Forwarded-For": "203.0.113.7", "Connection": "keep-alive, X-Private",
        "X-Private": "secret", "Keep-Alive": "timeout=5", "Proxy-Authorization": "x",
        "TE": "trailers", "X-Kept": "yes"})
    assert response.status == 200
    headers = {k.lower(): v for k, v in report(body)["headers"]}
    assert headers["x-forwarded-for"] == f"203.0.113.7, {site.hosts['client']}"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == f"{site.hosts['lb']}:8080"
    assert headers["x-kept"] == "yes"
    for gone in ("x-private", "keep-alive", "proxy-authorization", "te"):
        assert gone not in headers


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_response_body_framings(client, framing):
    size = 300_000 + 17
    response, body = client.request("GET", f"/bytes/{size}?framing={framing}")
    assert response.status == 200
    assert body == expected_bytes(size)
    if framing == "close":
        # Close-delimited from the backend becomes chunked for an HTTP/1.1 client.
        assert response.getheader("Transfer-Encoding") == "chunked"


def test_chunked_response_trailers_reach_client(client):
    raw = client.raw(b"GET /bytes/10?framing=chunked&trailer=1 HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.endswith(b"0\r\nX-Checksum: done\r\n\r\n")


def test_request_body_content_length(client):
    body = b"x" * 1_000_000
    response, data = client.request("POST", "/upload", body=body)
    got = report(data)
    assert (got["body_bytes"], got["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


def test_request_body_chunked_with_trailers(client):
    raw = client.raw(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n"
                     b"X-Digest: abc\r\n\r\n")
    got = report(raw.split(b"\r\n\r\n", 1)[1])
    assert got["body_bytes"] == 11
    assert got["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert got["trailers"] == [["X-Digest", "abc"]]


def test_keep_alive_reuses_client_and_upstream_connections(site):
    # With one backend, consecutive requests on one client connection must
    # arrive over the same pooled upstream connection.
    topo = Topology(["client", "lb", "b1"])
    try:
        topo.python_backend("b1", "b1")
        topo.balancer("lb", balancer_config(topo, ["b1"]))
        conn = Client(topo).connection()
        peers = []
        for i in range(5):
            conn.request("GET", f"/ka/{i}")
            response = conn.getresponse()
            peers.append(report(response.read())["peer"])
            assert response.getheader("Connection") is None
        conn.close()
        second = Client(topo).request("GET", "/again")[1]
        assert len(set(peers)) == 1
        assert report(second)["peer"] == peers[0]
    finally:
        topo.close()


def test_pipelined_requests_answered_in_order(client):
    raw = client.raw(b"".join(b"GET /p/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
                     + b"GET /p/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    paths = [report(body)["path"] for _, body in split_responses(raw)]
    assert paths == [f"/p/{i}" for i in range(5)] + ["/p/last"]


def test_head_has_no_body_and_connection_stays_usable(client):
    conn = client.connection()
    conn.request("HEAD", "/bytes/5000")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == "5000"
    assert response.read() == b""
    conn.request("GET", "/after-head")
    assert report(conn.getresponse().read())["path"] == "/after-head"
    conn.close()


@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses(client, status):
    raw = client.raw(b"GET /status/%d HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % status)
    assert raw.startswith(b"HTTP/1.1 %d" % status)
    assert b'"path": "/next"' in raw


def test_expect_100_continue(client, site):
    sock = site.connect("client", "lb", 8080)
    sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
    assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n")
    sock.sendall(b"hello")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert report(data.split(b"\r\n\r\n", 1)[1])["body_bytes"] == 5


def test_websocket_echo_through_upgrade(site):
    websocket_echo(site.connect("client", "lb", 8080))


def test_http10_client_gets_chunked_body_close_delimited(client):
    raw = client.raw(b"GET /bytes/70000?framing=chunked HTTP/1.0\r\n\r\n")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert b"Transfer-Encoding" not in head
    assert body == expected_bytes(70000)


def test_connect_is_refused_with_405(client):
    assert client.raw(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n"
                      ).startswith(b"HTTP/1.1 405")


def test_upgrade_refused_by_backend_ends_the_client_connection(client):
    # The backend answers an ordinary 200: the response travels, then the connection closes.
    raw = client.raw(b"GET /status/200 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                     b"Upgrade: h2c\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200") and b"Connection: close" in raw
    assert raw.count(b"HTTP/1.1 ") == 1


def test_unsolicited_bytes_after_a_response_never_reach_a_client(client):
    # Both answers come in one segment; the second must be dropped with its connection.
    for _ in range(3):
        raw = client.raw(b"GET /extra HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /status/204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        first, second = raw.split(b"HTTP/1.1 204", 1)
        assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"\r\n\r\nok")
        assert b"\r\n\r\nno" not in raw and b"HTTP/1.1 " not in second


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
])
def test_malformed_requests_get_400_and_others_keep_working(client, request_bytes):
    raw = client.raw(request_bytes)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request"), raw[:100]
    assert b"Connection: close" in raw
    assert client.request("GET", "/still-fine")[0].status == 200


def test_oversized_head_gets_431(client):
    raw = client.raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 431")


def test_backend_garbage_is_502(client):
    assert client.request("GET", "/garbage")[0].status == 502


def test_backend_reset_mid_response_truncates_only_that_client(client, site):
    sock = site.connect("client", "lb", 8080)
    sock.sendall(b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    with pytest.raises(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and len(data.split(b"\r\n\r\n", 1)[1]) < 1000
    assert client.request("GET", "/ok")[0].status == 200


def test_nginx_backend(topology):
    topo = topology(["client", "lb", "n1"])
    topo.nginx_backend("n1", "n1")
    topo.balancer("lb", balancer_config(topo, ["n1"]))
    client = Client(topo)
    conn = client.connection()
    for _ in range(3):
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"nginx n1\n")
    conn.close()


def test_error_statuses(topology):
    topo = topology(["client", "lb", "b1", "dead"])
    topo.python_backend("b1", "b1")
    config = balancer_config(topo, ["b1"], extra="timeouts: {request: 500ms}\n")
    topo.balancer("lb", config)
    client = Client(topo)
    response, body = client.request("GET", "/slow/2000")
    assert response.status == 504 and b"did not respond" in body
    # 502: nothing listens on the backend's port
    topo2 = topology(["client", "lb", "dead"])
    topo2.balancer("lb", balancer_config(topo2, ["dead"]))
    response, body = Client(topo2).request("GET", "/")
    assert response.status == 502 and b"cannot connect" in body


def test_no_backend_is_503_and_unresolved_host_does_not_stop_start(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    topo.names("lb", f"{topo.hosts['b1']} web1.l7lb.test\n")
    config = (f"balancer: {{port: 8080, bind: {topo.hosts['lb']}, workers: 1,"
              " health_check_interval: 1s}\n"
              "backends:\n  - {host: missing.l7lb.test, port: 8000}\n")
    lb = topo.balancer("lb", config)
    topo.wait_for_log(lb, "backend unresolved")
    response, body = Client(topo).request("GET", "/")
    assert response.status == 503 and response.getheader("Retry-After") == "1"
    lb.terminate()
    lb.wait(10)
    topo.balancer("lb", config.replace("missing", "web1"))
    response, body = Client(topo).request("GET", "/")
    assert response.status == 200 and report(body)["backend"] == "b1"


def test_sigterm_lets_in_flight_request_finish(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"]))
    sock = topo.connect("client", "lb", 8080)
    sock.sendall(b"GET /slow/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.4)
    lb.terminate()
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data
    assert report(data.split(b"\r\n\r\n", 1)[1])["path"] == "/slow/1500"
    assert lb.wait(10) == 0
    with pytest.raises(OSError):
        topo.connect("client", "lb", 8080, timeout=1)


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(pid)


@pytest.mark.parametrize("relay", ["auto", "copy"])
def test_one_gib_streams_with_bounded_memory(topology, relay):
    """1 GiB up (Content-Length) and 1 GiB down (chunked): RSS grows < 64 MiB."""
    gib = 1 << 30
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"]).replace(
        "workers: 1", f"workers: 1, relay: {relay}"))
    [pid] = topo.worker_pids(lb)
    before = rss_kib(pid)
    peak = before
    sock = topo.connect("client", "lb", 8080, timeout=60)
    sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % gib)
    block = b"z" * (1 << 20)
    for i in range(1024):
        sock.sendall(block)
        if i % 64 == 0:
            peak = max(peak, rss_kib(pid))
    data = b""
    while b"}" not in data:
        data += sock.recv(65536)
    assert report(data.split(b"\r\n\r\n", 1)[1])["body_bytes"] == gib
    sock.sendall(b"GET /bytes/%d?framing=chunked HTTP/1.1\r\nHost: x\r\n"
                 b"Connection: close\r\n\r\n" % gib)
    received, count = 0, 0
    while chunk := sock.recv(1 << 20):
        received += len(chunk)
        count += 1
        if count % 256 == 0:
            peak = max(peak, rss_kib(pid))
    sock.close()
    assert received > gib    # body plus chunk framing and head
    assert (peak - before) < 64 * 1024, f"RSS grew {(peak - before) // 1024} MiB"
