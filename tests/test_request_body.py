"""A request body on its way upstream (http/request_body.py) and who a client
is (http/identity.py): the bytes a backend is sent, without sockets."""

import pytest

from dataplane.config import BalancerSettings
from dataplane.http.codec import CHUNKED, LENGTH, NONE, Reject
from dataplane.http.identity import ClientIdentity
from dataplane.http.request import SPLICE_MIN
from dataplane.http.request_body import RequestBody
from dataplane.proxyproto.header import ProxyError


def test_a_chunked_body_is_rechunked_and_ends_with_its_trailers():
    body = RequestBody(CHUNKED)
    assert body.framed(b"hello", None) + body.framed(b"!", None) == b"5\r\nhello\r\n1\r\n!\r\n"
    assert body.last([(b"X-Sum", b"7")]) == b"0\r\nX-Sum: 7\r\n\r\n"
    assert body.bytes_in == 6


def test_a_chunked_body_over_the_limit_is_refused_with_413():
    body = RequestBody(CHUNKED)
    body.framed(b"x" * 10, 12)
    with pytest.raises(Reject) as refused:
        body.framed(b"x" * 3, 12)
    assert refused.value.status == 413


def test_a_body_of_stated_length_goes_as_it_came_and_counts_down():
    body = RequestBody(LENGTH, SPLICE_MIN + 10)
    assert body.spliceable()
    assert body.framed(b"x" * 10, None) == b"x" * 10
    assert body.remaining == SPLICE_MIN and body.spliceable()
    body.framed(b"x", None)
    assert not body.spliceable() and body.last([]) == b""


def test_held_bytes_follow_the_head_once_and_are_let_go():
    body = RequestBody(LENGTH, 6)
    body.hold(body.framed(b"abc", None))
    body.hold(body.framed(b"def", None))
    assert body.held_size == 6
    assert body.after(b"HEAD\r\n\r\n") == b"HEAD\r\n\r\nabcdef"
    assert body.after(b"HEAD") == b"HEAD" and body.held_size == 0


def test_no_body_is_never_spliced():
    assert not RequestBody(NONE).spliceable()


def test_a_client_is_named_by_its_socket_address_without_accept_proxy():
    who = ClientIdentity("198.18.0.1", None, BalancerSettings(), None)
    assert who.preamble is None and who.peer == b"198.18.0.1"
    assert who.tail == b"X-Forwarded-For: 198.18.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"


def test_a_proxy_header_in_pieces_names_the_client_and_gives_back_what_follows():
    who = ClientIdentity("198.18.0.9", None, BalancerSettings(accept_proxy=True), None)
    header = b"PROXY TCP4 198.18.5.5 198.18.0.9 40000 80\r\n"
    assert who.after_preamble(header[:10]) is None and who.peer == b"198.18.0.9"
    assert who.after_preamble(header[10:] + b"GET / HTTP/1.1\r\n") == b"GET / HTTP/1.1\r\n"
    assert who.preamble is None and who.peer == b"198.18.5.5"
    assert who.tail.startswith(b"X-Forwarded-For: 198.18.5.5\r\n")
    assert who.proxied is not None and who.proxied.src_port == 40000


def test_a_connection_without_a_proxy_header_is_refused():
    who = ClientIdentity("198.18.0.9", None, BalancerSettings(accept_proxy=True), None)
    with pytest.raises(ProxyError):
        who.after_preamble(b"GET / HTTP/1.1\r\n")


def test_a_kept_body_is_held_whole_again_for_another_host():
    body = RequestBody(CHUNKED, keep=100)
    first = body.framed(b"abc", None)
    body.hold(first)
    assert body.after(b"HEAD") == b"HEAD" + first        # sent to the first host
    last = body.last([])
    body.rewind()
    assert body.after(b"HEAD") == b"HEAD" + first + last  # all of it, for the next


def test_a_body_over_keep_is_not_kept_and_rewind_holds_nothing_more():
    body = RequestBody(LENGTH, 200, keep=100)
    body.framed(b"x" * 150, None)
    assert body.kept is None
    body.rewind()
    assert body.held == []
    assert RequestBody(CHUNKED).kept is None              # keep=0: nothing kept


def test_no_data_frames_no_chunk():
    # An empty HTTP/2 DATA frame must not become the last chunk upstream.
    assert RequestBody(CHUNKED).framed(b"", None) == b""
