"""The fast lane against the general path: the same bytes in, the same bytes
out (differential fuzzing).

Two in-process workers (dataplane/testing/inprocess.py), one with the lane
and one without, get the same generated request as one read and the same
generated response as one or two reads. What each writes upstream and to
the client, how the client connection ends, whether the upstream
connection survives, the access line (but its times) and the host's tally
must be equal. The requests and responses stay near what the lane takes
(valid, mostly canonical HTTP/1.1) and change one thing or two at a time:
separators, case, hop-by-hop headers, framing, statuses, split reads.

L7LB_LANE_EXAMPLES sets the number of cases (1500 here; scripts/fuzz runs
more), L7LB_LANE_SEED the seed (fixed here)."""

from __future__ import annotations

import io
import os
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

from dataplane import logs
from dataplane.http import client as client_module
from dataplane.http import lane
from dataplane.testing.inprocess import Client, InProcess

EXAMPLES = int(os.environ.get("L7LB_LANE_EXAMPLES", "1500"))
SEED = int(os.environ.get("L7LB_LANE_SEED", "20261202"))
TAIL = b"X-Forwarded-For: 198.18.0.2\r\nX-Forwarded-Proto: http\r\n\r\n"
SEPARATORS = [b": ", b": ", b": ", b":", b":  ", b":\t", b": \t"]
REQUEST_HEADERS = [      # the first five are end to end
    (b"User-Agent", [b"wrk", b"Mozilla/5.0 (X11; Linux x86_64)"]),
    (b"Accept", [b"*/*", b"text/html,application/xml;q=0.9"]),
    (b"Cookie", [b"a=1; b=2"]), (b"X-Id", [b"7", b"x  "]), (b"Referer", [b"http://h/"]),
    (b"X-Empty", [b""]),
    (b"Connection", [b"keep-alive", b"close", b"Keep-Alive", b"upgrade", b"keep-alive, X-Id"]),
    (b"connection", [b"keep-alive"]), (b"Keep-Alive", [b"timeout=5"]), (b"TE", [b"trailers"]),
    (b"Trailer", [b"X-Sum"]), (b"Expect", [b"100-continue"]), (b"X-Forwarded-For", [b"1.2.3.4"]),
    (b"X-Forwarded-Proto", [b"https"]), (b"Proxy-Authorization", [b"Basic eA=="]),
    (b"Upgrade", [b"websocket"]), (b"Transfer-Encoding", [b"chunked"]), (b"HOST", [b"other"]),
]
RESPONSE_HEADERS = [     # the first five are end to end or what the lane removes
    (b"Server", [b"nginx/1.22.1"]), (b"Date", [b"Wed, 02 Dec 2026 19:00:00 GMT"]),
    (b"Content-Type", [b"text/plain", b"text/html; charset=utf-8"]), (b"Set-Cookie", [b"s=1"]),
    (b"Connection", [b"keep-alive", b"keep-alive", b"close", b"Keep-Alive", b"keep-alive, X-A"]),
    (b"connection", [b"keep-alive"]), (b"Keep-Alive", [b"timeout=5"]), (b"X-A", [b"1", b""]),
    (b"Transfer-Encoding", [b"chunked"]), (b"X-Forwarded-For", [b"9.9.9.9"]),
    (b"Proxy-Connection", [b"close"]), (b"Upgrade", [b"h2c"]), (b"Trailer", [b"X-Sum"]),
]
STATUS_LINES = [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK", b"HTTP/1.1 201 Created",
                b"HTTP/1.1 404 Not Found", b"HTTP/1.1 500 Server Error", b"HTTP/1.1 204 No Content",
                b"HTTP/1.1 304 Not Modified", b"HTTP/1.0 200 OK", b"HTTP/1.1 200 ",
                b"HTTP/1.1 200 Odd\x01Reason", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK",
                b"HTTP/1.1 503 Service Unavailable"]
TIMES = re.compile(rb'"ms":[0-9.]+|"timestamp":"[^"]*"')
lane_carried: Counter[str] = Counter()


def usually(draw, choices: list, good: int = 1):
    """One of the first ``good`` choices three times in four, else any."""
    pool = choices if draw(st.integers(0, 3)) == 0 else choices[:good]
    return draw(st.sampled_from(pool))


def header_lines(draw, pool: list, most: int) -> list[bytes]:
    """Half the time only end-to-end headers, written as the codec writes them."""
    plain = draw(st.booleans())
    pool = pool[:5] if plain else pool
    lines = []
    for _ in range(draw(st.integers(0, most))):
        name, values = draw(st.sampled_from(pool))
        separator = b": " if plain else usually(draw, SEPARATORS, good=3)
        lines.append(name + separator + draw(st.sampled_from(values)))
    return lines


@st.composite
def requests(draw) -> bytes:
    method = usually(draw, [b"GET", b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS",
                            b"CONNECT"], good=4)
    target = usually(draw, [b"/", b"/a/b?c=d", b"/%41x", b"http://h.example/abs", b"*"], good=2)
    version = usually(draw, [b"HTTP/1.1", b"HTTP/1.0"])
    host = b"Host" + usually(draw, SEPARATORS, good=3) + usually(
        draw, [b"h.example", b"h.example:8080", b"", b" h"], good=2)
    lines = header_lines(draw, REQUEST_HEADERS, 4)
    # HTTP/1.0 without Host would ask the socket which address it reached, and
    # the stand-ins have none (the namespace tests cover that case).
    where = usually(draw, ["first", "later", "none", "twice"] if version == b"HTTP/1.1"
                    else ["first", "later", "twice"])
    if where == "first":
        lines.insert(0, host)
    elif where == "later":
        lines.append(host)
    elif where == "twice":
        lines[:0] = [host, host]
    body = b""
    if method in (b"POST", b"PUT") or draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=64))
        length = usually(draw, [len(body), len(body) + 1, max(len(body) - 1, 0)])
        lines.append(b"Content-Length" + usually(draw, SEPARATORS, good=3) + b"%d" % length)
    raw = b"%b %b %b\r\n%b\r\n" % (method, target, version, b"".join(l + b"\r\n" for l in lines))
    raw += body
    if draw(st.integers(0, 15)) == 0:           # pipelined
        raw += b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    return raw


@st.composite
def responses(draw) -> list[bytes]:
    status = usually(draw, STATUS_LINES, good=2)
    lines = header_lines(draw, RESPONSE_HEADERS, 5)
    body = draw(st.binary(max_size=80))
    framing = usually(draw, ["length", "length", "chunked", "none", "wrong"], good=2)
    if framing == "length":
        lines.append(b"Content-Length" + usually(draw, SEPARATORS, good=3) + b"%d" % len(body))
    elif framing == "wrong":
        lines.append(b"Content-Length: %d" % (len(body) + draw(st.sampled_from([-1, 1, 5]))))
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    raw = status + b"\r\n" + b"".join(l + b"\r\n" for l in lines) + b"\r\n" + body
    if draw(st.integers(0, 3)) == 0 and len(raw) > 1:     # two reads
        at = draw(st.integers(1, len(raw) - 1))
        return [raw[:at], raw[at:]]
    return [raw]


class Run:
    """One world (with the lane or without) and its access log."""

    def __init__(self, with_lane: bool) -> None:
        self.world = InProcess(lane=with_lane, access=True)
        self.exchanges = 0

    def __call__(self, request: bytes, response: list[bytes]) -> tuple[object, ...]:
        world = self.world
        world.reset()
        world.forget_written()
        world.idle_upstream()
        before = len(_log.getvalue())
        made = Counter[str]()
        original = client_module.Exchange

        def counted(*args):
            made["exchange"] += 1
            return original(*args)
        client_module.Exchange = counted
        try:
            client = Client(world.worker)
            client.send(request)
            world.settle()
            conn, upstream = world.written_upstream()
            if conn is not None:
                for chunk in response:
                    conn.stream.data_received(chunk)
                world.settle()
        finally:
            client_module.Exchange = original
        answer = client.transport.take()
        ended = tuple(client.transport.ended)
        survived = conn is not None and not conn.stream.closed
        client.connection.close()
        lines = TIMES.sub(b"", _log.getvalue()[before:])
        figures = world.host.tally.take()
        tally = (figures.requests, figures.statuses, figures.bytes_in, figures.bytes_out,
                 figures.answered) if figures is not None else None
        self.exchanges = made["exchange"]
        return upstream, answer, ended, survived, lines, tally


_log = io.BytesIO()     # the access lines of both worlds, as JSON


@pytest.fixture(scope="module")
def runs():
    kept = logs.access.json_stream
    logs.access.json_stream = _log
    yield {True: Run(True), False: Run(False)}
    logs.access.json_stream = kept


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests(), response=responses())
def test_the_lane_and_the_general_path_send_the_same_bytes(runs, request, response):
    general = runs[False](request, response)
    fast = runs[True](request, response)
    again = runs[True](request, response)    # the heads' verdicts, now remembered
    carried = "whole" if runs[True].exchanges == 0 and general[0] else \
        "handed over" if runs[True].exchanges and lane.simple_request(
            request, TAIL, 65536, 100, 65536) else "general"
    lane_carried[carried] += 1
    event(f"lane: {carried}")
    assert fast == general
    assert again == general


def test_the_fuzz_reached_the_lane():
    """The cases above went every way: carried whole on the lane, handed over
    from it, and on the general path alone."""
    total = sum(lane_carried.values())
    assert total >= min(EXAMPLES, 200)
    assert lane_carried["whole"] >= total // 20, lane_carried     # 8% at the default seed
    assert lane_carried["handed over"] >= total // 50, lane_carried
    print(f"{total} differential cases: {dict(lane_carried)}")


def test_the_lane_remembers_a_bounded_number_of_heads():
    """A flood of distinct heads costs the lane its memory of them, no more:
    each verdict is still made, and what it remembers stays bounded."""
    for number in range(3 * lane._HEADS_KEPT):
        request = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % number
        assert lane.simple_request(request, TAIL, 65536, 100, 65536) is not None
        assert len(lane._request_heads) <= lane._HEADS_KEPT
    long = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"a" * lane._HEAD_KEPT_BYTES + b"\r\n\r\n"
    assert lane.simple_request(long, TAIL, 65536, 100, 65536) is not None
    assert long not in lane._request_heads


def test_a_remembered_head_still_needs_its_whole_body():
    """The verdict on a head is remembered; whether a read holds the whole
    message, and the limits, are checked on every read."""
    head = b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
    assert lane.simple_request(head + b"hello", TAIL, 65536, 100, 65536) is not None
    assert lane.simple_request(head + b"hel", TAIL, 65536, 100, 65536) is None
    assert lane.simple_request(head + b"hello!", TAIL, 65536, 100, 65536) is None
    assert lane.simple_request(head + b"hello", TAIL, 65536, 1, 65536) is None
    assert lane.simple_request(head + b"hello", TAIL, 65536, 100, 4) is None
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    assert lane.simple_response(response + b"abc") == (response + b"abc", 200, 3)
    assert lane.simple_response(response + b"ab") is None
