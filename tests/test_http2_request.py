"""The sans-IO parts of HTTP/2 to clients: a header block read as a request
head (dataplane/http2/request.py) and the flood budgets (guard.py)."""

from __future__ import annotations

import pytest

from dataplane.http.codec import CHUNKED, LENGTH, NONE, Reject, request_head as upstream_head
from dataplane.http2.guard import Budget, Guard
from dataplane.http2.request import answer_block, request_head, response_block, trailer_block

BLOCK = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"shop.test"),
         (b":path", b"/cart?x=1"), (b"cookie", b"a=1"), (b"accept", b"*/*"),
         (b"cookie", b"b=2")]


def test_authority_becomes_host_and_cookies_are_joined():
    head = request_head(BLOCK, ended=True, stripped=frozenset(), body_limit=None)
    assert (head.method, head.target, head.version) == (b"POST", b"/cart?x=1", "2.0")
    assert head.fields.authority == b"shop.test" and head.framing == NONE
    sent = upstream_head(head.method, head.target, head.fields, b"198.18.0.2",
                         b"X-Forwarded-Proto: https\r\n", False)
    assert sent == (b"POST /cart?x=1 HTTP/1.1\r\nhost: shop.test\r\naccept: */*\r\n"
                    b"cookie: a=1; b=2\r\nX-Forwarded-For: 198.18.0.2\r\n"
                    b"X-Forwarded-Proto: https\r\n\r\n")


def test_authority_wins_over_host_and_host_alone_will_do():
    both = [*BLOCK, (b"host", b"other.test")]
    assert request_head(both, True, frozenset(), None).fields.authority == b"shop.test"
    alone = [(n, v) for n, v in both if n != b":authority"]
    assert request_head(alone, True, frozenset(), None).fields.authority == b"other.test"
    with pytest.raises(Reject) as refused:
        request_head([(n, v) for n, v in alone if n != b"host"], True, frozenset(), None)
    assert refused.value.status == 400


def test_body_framing_length_or_chunked_and_the_body_limit():
    sized = [*BLOCK, (b"content-length", b"5")]
    assert request_head(sized, False, frozenset(), None).framing == LENGTH
    assert request_head(BLOCK, False, frozenset(), None).framing == CHUNKED
    with pytest.raises(Reject) as refused:
        request_head([*BLOCK, (b"content-length", b"50")], False, frozenset(), 10)
    assert refused.value.status == 413
    with pytest.raises(Reject):
        request_head([*BLOCK, (b"content-length", b"x")], False, frozenset(), None)


def test_connect_is_refused_and_stripped_names_are_dropped():
    with pytest.raises(Reject) as refused:
        request_head([(b":method", b"CONNECT"), (b":authority", b"a:443")], False,
                     frozenset(), None)
    assert refused.value.status == 405
    head = request_head([*BLOCK, (b"x-client-subject", b"CN=me")], True,
                        frozenset({b"x-client-subject"}), None)
    assert b"x-client-subject" not in b"".join(head.fields.lines)


def test_response_answer_and_trailer_blocks():
    lines = [b"Content-Type", b": ", b"text/plain", b"\r\n", b"X-Backend", b": ", b"b1", b"\r\n"]
    assert response_block(200, lines) == [(b":status", b"200"), (b"content-type", b"text/plain"),
                                          (b"x-backend", b"b1")]
    assert answer_block(503, b"Content-Type: text/plain\r\nRetry-After: 1\r\n", 7) == [
        (b":status", b"503"), (b"content-type", b"text/plain"), (b"retry-after", b"1"),
        (b"content-length", b"7")]
    assert trailer_block([(b"Grpc-Status", b"0"), (b"Content-Length", b"3")]) == [
        (b"grpc-status", b"0")]


def test_budgets_count_per_second_and_name_the_overdraft():
    budget = Budget(3)
    assert [budget.spend(10.1) for _ in range(4)] == [True, True, True, False]
    assert budget.spend(11.0)            # a new second
    guard = Guard(resets_per_second=2, control_per_second=100)
    assert guard.reset(5.0) and guard.reset(5.5) and not guard.reset(5.9)
    assert "max_resets_per_second" in guard.calm


def test_streams_opened_raise_the_control_frame_budget_for_their_second():
    from dataplane.http2.guard import PER_STREAM
    guard = Guard(resets_per_second=100, control_per_second=5)
    guard.stream_opened(7.2)
    assert all(guard.control_frame(7.3) for _ in range(5 + PER_STREAM))
    assert not guard.control_frame(7.4) and "max_control_frames_per_second" in guard.calm
    calm = Guard(resets_per_second=100, control_per_second=5)
    calm.stream_opened(7.9)                  # earned in one second, not spent in the next
    assert [calm.control_frame(8.1) for _ in range(6)] == [True] * 5 + [False]


def test_a_bodiless_request_is_offered_to_the_lane_as_the_http11_it_stands_for():
    from dataplane.http2.stream_lane import as_http1
    block = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test"),
             (b":path", b"/x?y=1"), (b"accept", b"*/*")]
    assert as_http1(block) == b"GET /x?y=1 HTTP/1.1\r\nHost: a.test\r\naccept: */*\r\n\r\n"
    assert as_http1([*block, (b"cookie", b"a=1")]) is None      # joined on the general path
    assert as_http1([*block, (b"host", b"b.test")]) is None
    assert as_http1([pair for pair in block if pair[0] != b":authority"]) is None


def test_the_lanes_answer_head_becomes_one_encoded_block():
    from hpack import Decoder
    from dataplane.http2.hpack_codec import TABLE_OFF
    from dataplane.http2.stream_lane import encoded_response
    head = b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Length: 9\r\nX-Trace: t1"
    decoded = Decoder().decode(TABLE_OFF + encoded_response(head), raw=True)
    assert decoded == [(b":status", b"404"), (b"server", b"nginx"), (b"content-length", b"9"),
                       (b"x-trace", b"t1")]
    assert encoded_response(head) is encoded_response(head)     # remembered by its bytes


def test_the_decoder_keeps_in_step_with_a_table_that_evicts():
    from hpack import Encoder
    from dataplane.http2.hpack_codec import Decoder
    encoder, decoder = Encoder(), Decoder(4096, 65536)
    encoder.header_table_size = 300          # a size update, then entries pushed out often
    for n in range(200):
        fields = [(b":method", b"GET"), (b":path", b"/%d" % (n % 7)),
                  (b"x-n", b"%d" % (n % 11)), (b"x-long", b"v" * (n % 90))]
        assert decoder.decode(encoder.encode(fields)) == fields
    assert decoder.limit == 300 and decoder.table_size <= 300


def test_a_repeated_request_block_is_decoded_once_while_the_table_holds():
    from hpack import Encoder
    from dataplane.http2.header_blocks import HeaderBlocks
    blocks, encoder = HeaderBlocks(4096, 65536), Encoder()
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"),
              (b":path", b"/"), (b"accept", b"*/*")]
    first = blocks.request(encoder.encode(fields))          # literals: the table grows
    repeat = encoder.encode(fields)                           # indexed only
    again = blocks.request(repeat)
    assert first is not None and again is not None and again[0] == fields
    assert blocks.request(repeat) is again                    # remembered, not decoded
    blocks.request(encoder.encode([*fields, (b"x-new", b"1")]))   # the table changes
    fresh = encoder.encode(fields)                            # indexes moved: new bytes
    assert fresh != repeat and blocks.request(fresh)[0] == fields
    assert list(blocks.remembered) == [fresh]    # what was kept before the change is gone
