"""What the HTTP fuzzing found (test_fuzz_http.py), one regression test each:
the request the fuzzer shrank to, and what a user now sees."""

from __future__ import annotations

import socket

import pytest
from oracle import CannedBackend, OracleBackend, read_answers
from test_fuzz_http import CONFIG
from topology import Topology


EXTRA = """pool: {max_idle: 0}
routes:
  - {match: {path: {exact: /local}}, respond: {status: 200, body: "here\\n"}}
  - {match: {path: {prefix: /}}, cluster: default}
"""


def _site(server: type):
    topo = Topology(["client", "lb", "b1"])
    try:
        listener = topo.socket("b1")
        listener.bind((topo.hosts["b1"], 8000))
        backend = server(listener).start()
        lb = topo.balancer("lb", CONFIG.format(lb=topo.hosts["lb"], b1=topo.hosts["b1"],
                                               tmp=topo.tmp) + EXTRA)
        topo.wait_for_log(lb, '"event":"state applied"')
        yield topo, backend, lb
    finally:
        topo.close()


@pytest.fixture(scope="module")
def site():
    yield from _site(OracleBackend)


def exchange(topo: Topology, data: bytes, count: int = 2):
    sock = topo.connect("client", "lb", 8080, timeout=5)
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_answers(sock, ["GET"] * count)
    finally:
        sock.close()


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", 400),
    (b"GET / HTTP/0.9\r\nHost: a.example\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: a.example\r\n\r\n", 400),
    (b"GET / HTTP/1.2\r\nHost: a.example\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 400),
])
def test_ambiguous_requests_are_refused_and_reach_no_backend(site, request_bytes, status):
    topo, backend, _ = site
    backend.taken()
    answers, _ = exchange(topo, request_bytes, count=1)
    assert [a.status for a in answers] == [status]
    assert backend.taken() == []


def test_http_1_0_without_host_reaches_the_backend_with_the_address_it_reached(site):
    topo, backend, _ = site
    backend.taken()
    answers, _ = exchange(topo, b"GET /old HTTP/1.0\r\n\r\n", count=1)
    assert [a.status for a in answers] == [200]
    [reading] = backend.taken()
    assert ("host", f"{topo.hosts['lb']}:8080") in reading.headers


def test_bytes_after_a_closing_request_in_the_same_read_are_discarded_quietly(site):
    """A local answer to the first request half-closes the connection while
    the parser still holds the second: the balancer used to write a 400 after
    that half-close and uvloop logged a fatal transport error."""
    topo, backend, lb = site
    answers, ending = exchange(topo, b"GET /local HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                                     b"\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [a.status for a in answers] == [200] and ending == "closed"
    assert exchange(topo, b"GET /z HTTP/1.1\r\nHost: a\r\n\r\n", count=1)[0][0].status == 200
    assert "Fatal error" not in topo.log(lb)


def test_a_response_coding_before_chunked_reaches_the_client_intact():
    """It used to be restated as plain chunked, so the client took gzip bytes
    for the body itself."""
    for topo, backend, _ in _site(CannedBackend):
        backend.response = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                            b"3\r\nabc\r\n0\r\n\r\n")
        sock = topo.connect("client", "lb", 8080, timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: gzip, chunked" in head.split(b"\r\n")
        assert body == b"3\r\nabc\r\n0\r\n\r\n"


def test_a_response_chunked_twice_gets_502():
    """Passed on verbatim, "chunked, chunked" would have the client undo a
    coding applied once (the scripts/fuzz run with seed 2946827475)."""
    for topo, backend, _ in _site(CannedBackend):
        backend.response = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
                            b"3\r\nabc\r\n0\r\n\r\n")
        answers, _ = exchange(topo, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", count=1)
        assert [a.status for a in answers] == [502]


def test_a_reason_phrase_with_control_bytes_is_replaced_by_ours():
    """The client got the NUL and could not read the status line (the
    scripts/fuzz run with seed 2946827475)."""
    for topo, backend, _ in _site(CannedBackend):
        backend.response = b"HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nhi"
        answers, _ = exchange(topo, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", count=1)
        assert [(a.status, a.body) for a in answers] == [(200, b"hi")]
