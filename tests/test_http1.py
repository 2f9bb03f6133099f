"""HTTP/1.1 proxy rules, without sockets."""

from __future__ import annotations

from dataplane.http import codec as http1
from dataplane.http.codec import CHUNKED, CLOSE, LENGTH, NONE


def test_request_head_drops_hop_by_hop_and_adds_forwarding():
    head = http1.request_head(
        b"GET", b"/x?y=1", http1.scan([(b"Host", b"example"), (b"Connection", b"keep-alive, X-Drop"), (b"X-Drop", b"1"),
         (b"Keep-Alive", b"timeout=5"), (b"TE", b"trailers"), (b"Proxy-Connection", b"x"),
         (b"X-Forwarded-For", b"10.0.0.1"), (b"x-forwarded-for", b"10.0.0.2"),
         (b"X-Forwarded-Proto", b"https"), (b"Accept", b"*/*")]),
        b"198.18.0.2", b"X-Forwarded-Proto: http\r\n", False)
    assert head == (b"GET /x?y=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n"
                    b"X-Forwarded-For: 10.0.0.1, 10.0.0.2, 198.18.0.2\r\n"
                    b"X-Forwarded-Proto: http\r\n\r\n")


def test_request_head_restates_chunked_and_upgrade():
    head = http1.request_head(b"POST", b"/", http1.scan([(b"Transfer-Encoding", b"chunked"),
                                                         (b"Upgrade", b"websocket")]),
                              b"1.2.3.4", b"X-Forwarded-Proto: https\r\n", True)
    assert b"Transfer-Encoding: chunked\r\n" in head
    assert head.endswith(b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert head.count(b"Upgrade:") == 1
    assert b"X-Forwarded-Proto: https\r\n" in head      # a TLS listener's request


def test_response_head_reframes_for_client():
    fields = http1.scan([(b"Content-Length", b"5"), (b"Connection", b"close"), (b"X-A", b"1")])
    assert http1.response_head(200, b"OK", fields, LENGTH, None) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n")      # in its place
    chunked = http1.response_head(200, b"OK", http1.scan([(b"X-A", b"1")]), CHUNKED, b"close")
    assert chunked == b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"


def test_framings():
    scan = http1.scan
    assert (scan([(b"Content-Length", b"12")]).framing, scan([(b"Content-Length", b"12")]).length) \
        == (LENGTH, 12)
    assert scan([(b"transfer-encoding", b"chunked")]).framing == CHUNKED
    assert scan([]).framing == NONE
    assert http1.response_framing(scan([]), 200, False) == CLOSE
    assert http1.response_framing(scan([(b"Content-Length", b"3")]), 200, True) == NONE
    assert http1.response_framing(scan([(b"Content-Length", b"3")]), 304, False) == NONE
    both = scan([(b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")])
    assert http1.response_framing(both, 200, False) == CHUNKED
    assert http1.response_head(200, b"OK", both, CHUNKED, None).count(b"Content-Length") == 0
    assert http1.client_framing(CLOSE, "1.1") == CHUNKED
    assert http1.client_framing(CHUNKED, "1.0") == CLOSE
    assert http1.client_framing(LENGTH, "1.0") == LENGTH


def test_chunks_and_trailers():
    assert http1.chunk(b"hello") == b"5\r\nhello\r\n"
    assert http1.last_chunk([(b"X-Sum", b"1"), (b"Content-Length", b"9")]) == b"0\r\nX-Sum: 1\r\n\r\n"


def test_error_response_is_complete_and_closes():
    raw = http1.error_response(503, "no backend available")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable")
    assert b"Retry-After: 1" in head and b"Connection: close" in head
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
