"""The server name of a TLS ClientHello, read without decrypting."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.tcp.client_hello import NEED_MORE, NotTls, server_name


def client_hello(name: str | None) -> bytes:
    """The first flight of Python's own TLS client (OpenSSL)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    if name is None:
        context.check_hostname = False
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_the_name_asked_for_lowercase():
    assert server_name(client_hello("Api.Example.COM")) == "api.example.com"


def test_no_name_when_the_client_sends_none():
    assert server_name(client_hello(None)) is None


def test_a_partial_record_needs_more():
    hello = client_hello("a.test")
    for cut in (0, 4, 5, 60, len(hello) - 1):
        assert server_name(hello[:cut]) == NEED_MORE


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",
                                  b"\x17\x03\x03\x00\x01x", b"\x16\x03\x01\x00\x04\x01\x00\x00\x40"])
def test_what_is_not_a_client_hello_is_refused(data):
    with pytest.raises(NotTls):
        server_name(data)


@given(st.binary(max_size=600))
def test_any_bytes_give_an_answer_or_not_tls(data):
    try:
        result = server_name(b"\x16\x03\x01" + len(data).to_bytes(2, "big") + data)
    except NotTls:
        return
    assert result is None or isinstance(result, str)
