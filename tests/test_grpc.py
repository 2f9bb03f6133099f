"""gRPC as the balancer meets it (dataplane/http2/grpc.py): which requests
are calls, their deadlines, and the status of each answer of its own."""

from __future__ import annotations

from dataplane.http2 import grpc
from dataplane.upstream.outcome import ErrorKind


def test_grpc_content_types_and_not_grpc_web():
    assert grpc.is_grpc(b"application/grpc")
    assert grpc.is_grpc(b"application/grpc+proto")
    assert grpc.is_grpc(b"application/grpc;charset=utf-8")
    assert not grpc.is_grpc(b"application/grpc-web")
    assert not grpc.is_grpc(b"application/json")


def test_timeouts_read_and_written():
    assert grpc.timeout(b"300m") == 0.3
    assert grpc.timeout(b"2S") == 2.0 and grpc.timeout(b"1H") == 3600.0
    assert abs(grpc.timeout(b"5u") - 5e-6) < 1e-12
    assert grpc.timeout(b"123456789m") is None        # nine digits: not a timeout
    assert grpc.timeout(b"10s") is None and grpc.timeout(b"") is None
    assert grpc.encode_timeout(0.3) == b"300m" and grpc.encode_timeout(0.0001) == b"1m"
    assert grpc.encode_timeout(10**6) == b"1000000S"


def test_each_answer_of_the_balancers_own_has_its_status():
    table = {(503, ErrorKind.NONE): 14, (502, ErrorKind.CONNECT_REFUSED): 14,
             (504, ErrorKind.CONNECT_TIMEOUT): 14, (504, ErrorKind.TOTAL_TIMEOUT): 4,
             (504, ErrorKind.RESPONSE_TIMEOUT): 4, (413, ErrorKind.NONE): 8,
             (431, ErrorKind.NONE): 8, (429, ErrorKind.NONE): 14, (404, ErrorKind.NONE): 12,
             (405, ErrorKind.NONE): 12, (400, ErrorKind.NONE): 13, (408, ErrorKind.NONE): 4,
             (418, ErrorKind.NONE): 2}
    assert {key: grpc.status_for(*key) for key in table} == table


def test_a_trailers_only_answer_percent_encodes_its_message():
    block = grpc.trailers_only(503, ErrorKind.NONE, "no backend: 100% down é")
    assert block == [(b":status", b"200"), (b"content-type", b"application/grpc"),
                     (b"grpc-status", b"14"),
                     (b"grpc-message", b"no backend: 100%25 down %C3%A9")]
