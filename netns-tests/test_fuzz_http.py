"""HTTP fuzzing against an oracle: malformed and ambiguous requests through the
live balancer to a backend that reads with h11.

The rule, for each generated request followed on the same connection by a
plain sentinel request: every request the backend reads is one h11 reads the
same way (method, target, end-to-end headers, body) at the same place in what
the client sent; whatever the balancer answers itself is a 4xx (or 501 for a transfer coding
other than chunked, as RFC 9112 asks); nothing h11
refuses reaches the backend; the backend reads nothing the client did not
get an answer for (no smuggled request); and the answers on the connection
stay in order (the sentinel is answered as itself, or the connection closes).

Responses the same way: a backend sends a generated response (then closes);
the client gets what h11 reads in it (status, end-to-end headers, body), or
the balancer's 502, or a connection closed in the middle of a response whose
head had passed; the sentinel that follows on the connection is answered as
itself or the connection closes.

L7LB_FUZZ_EXAMPLES sets the number of request cases (2000 here; scripts/fuzz
runs more, with a new seed); pipelined pairs and responses get a quarter each.
"""

from __future__ import annotations

import os
import re
import socket

import pytest
from hypothesis import HealthCheck, event, given, seed, settings
from fuzz_cases import requests, responses
from oracle import (CannedBackend, OracleBackend, Reading, end_to_end, read_answers,
                    read_requests, read_response)
from topology import Topology

EXAMPLES = int(os.environ.get("L7LB_FUZZ_EXAMPLES", "2000"))
SEED = int(os.environ.get("L7LB_FUZZ_SEED", "20261127"))     # fixed in CI
SENTINEL = b"GET /sentinel HTTP/1.1\r\nHost: s.example\r\n\r\n"
QUARTER = dict(max_examples=max(EXAMPLES // 4, 10), deadline=None, database=None,
               suppress_health_check=list(HealthCheck))
CONFIG = """balancer: {{port: 8080, bind: {lb}, mode: http, workers: 1}}
backends:
  - {{host: {b1}, port: 8000}}
admin: {{socket: {tmp}/admin.sock}}
health: {{type: tcp, passive: false}}
breaker: {{enabled: false}}
timeouts: {{header: 1s, client_body: 1s, request: 3s}}
log: {{access: false}}
"""


def _site(server: type, extra: str = ""):
    topo = Topology(["client", "lb", "b1"])
    try:
        listener = topo.socket("b1")
        listener.bind((topo.hosts["b1"], 8000))
        backend = server(listener).start()
        topo.balancer("lb", CONFIG.format(lb=topo.hosts["lb"], b1=topo.hosts["b1"], tmp=topo.tmp)
                      + extra)
        yield topo, backend
    finally:
        topo.close()


@pytest.fixture(scope="module")
def site():
    yield from _site(OracleBackend)


@pytest.fixture(scope="module")
def canned():
    # No idle upstream connections: each case's backend connection ends with it.
    yield from _site(CannedBackend, "pool: {max_idle: 0}\nretries: {attempts: 0}\n")


def check(topo: Topology, backend: OracleBackend, raw: bytes) -> None:
    sent = raw + SENTINEL
    note = f"sent {sent[:800]!r}"
    expected, _ = read_requests(sent)
    backend.taken()
    sock = topo.connect("client", "lb", 8080, timeout=3)
    try:
        sock.sendall(sent)
        sock.shutdown(socket.SHUT_WR)
        methods = [r.method for r in expected] + ["GET"] * 3
        answers, ending = read_answers(sock, methods[:len(expected) + 3])
    finally:
        sock.close()
    seen = backend.taken()
    assert not ending.startswith("garbled"), (ending, note)
    assert not [s for s in seen if isinstance(s, tuple)], \
        f"h11 refused what was forwarded: {seen}; {note}"
    assert sum(a.from_backend for a in answers) == len(seen), (answers, seen, note)
    first = answers[0] if answers else None
    event("first answer: " + (ending if first is None else
                              "forwarded" if first.from_backend else str(first.status)))
    reached = iter(seen)
    for place, answer in enumerate(answers):
        if not answer.from_backend:
            assert 400 <= answer.status < 500 or answer.status == 501, (place, answer, note)
            continue
        reading = next(reached)
        assert place < len(expected), f"request {place} reached the backend; h11 reads " \
            f"only {len(expected)}: {reading}; {note}"
        assert _implied_host_dropped(reading, expected[place]).end_to_end() == \
            expected[place].end_to_end(), (place, note)
    assert ending in ("closed", "complete"), (ending, answers, note)


def _implied_host_dropped(reading: Reading, original: Reading) -> Reading:
    """An HTTP/1.0 request without Host goes upstream as 1.1 with one (docs/proxy.md)."""
    if any(name == "host" for name, _ in original.headers):
        return reading
    return Reading(reading.method, reading.target,
                   [(n, v) for n, v in reading.headers if n != "host"], reading.body)


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(raw=requests())
def test_every_request_is_refused_or_forwarded_as_h11_reads_it(site, raw):
    check(*site, raw)


@seed(SEED + 1)
@settings(**QUARTER)
@given(first=requests(), second=requests())
def test_two_malformed_requests_pipelined_keep_the_connection_in_step(site, first, second):
    check(*site, first + second)


_REASON = re.compile(rb"^(HTTP/\d\.\d \d{3} )([^\r\n]*)", re.MULTILINE)


def _reason_cleaned(match: re.Match) -> bytes:
    return match[1] + bytes(c for c in match[2] if c == 9 or 32 <= c < 127 or c > 127)


@seed(SEED + 2)
@settings(**QUARTER)
@given(raw=responses())
def test_every_response_is_passed_as_h11_reads_it_or_refused_with_502(canned, raw):
    topo, backend = canned
    expected, ok = read_response(raw)
    if not ok:      # the balancer replaces a reason phrase with control bytes by its own
        expected, ok = read_response(_REASON.sub(_reason_cleaned, raw))
    note = f"backend sent {raw[:800]!r}"
    backend.response = raw
    sock = topo.connect("client", "lb", 8080, timeout=3)
    try:
        sock.sendall(b"GET /case HTTP/1.1\r\nHost: h\r\n\r\n" + SENTINEL)
        sock.shutdown(socket.SHUT_WR)
        answers, ending = read_answers(sock, ["GET", "GET", "GET"])
    finally:
        sock.close()
    assert ending in ("closed", "cut", "complete"), (ending, note)
    if not answers:
        assert ending == "cut", (ending, note)     # a head passed, then the body broke
        return
    first = answers[0]
    event(f"response: {first.status if first.status == 502 else 'passed'}, h11 {ok}")
    if first.status != 502:
        assert ok, f"passed what h11 refuses: {first}; {note}"
        assert (first.status, end_to_end(first.headers), first.body) == \
            (expected.status, end_to_end(expected.headers), expected.body), note
    for later in answers[1:]:
        assert ("x-sentinel", "1") in later.headers, (answers, note)


def test_the_oracle_tells_a_smuggled_request_from_a_body():
    """The checks above can fail: h11 reads CL+TE as chunked, so the bytes
    after the chunked body are a second request; a proxy that framed by
    Content-Length would hand the backend a request the client never made."""
    smuggle = (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 30\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n")
    readings, ok = read_requests(smuggle)
    assert [r.target for r in readings] == ["/", "/admin"] and ok
    readings, ok = read_requests(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
                                 b"Content-Length: 2\r\n\r\nab")
    assert readings == [] and not ok
