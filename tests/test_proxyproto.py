"""PROXY protocol headers: what we write reads back, byte for byte as the
specification's examples, and what is not a header is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.proxyproto.header import Addresses, ProxyError, encode, parse

V4 = Addresses("198.18.0.2", 40000, "198.18.0.3", 8080)
V6 = Addresses("2001:db8::1", 1, "2001:db8::2", 65535)


def test_v1_is_the_documented_line():
    assert encode("v1", V4) == b"PROXY TCP4 198.18.0.2 198.18.0.3 40000 8080\r\n"
    assert encode("v1", None) == b"PROXY UNKNOWN\r\n"


def test_v2_has_the_signature_version_command_and_family():
    header = encode("v2", V4)
    assert header[:12] == b"\r\n\r\n\x00\r\nQUIT\n" and header[12] == 0x21 and header[13] == 0x11
    assert len(header) == 16 + 12
    assert encode("v2", None)[12:16] == b"\x20\x00\x00\x00"      # LOCAL, no address


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("addresses", [V4, V6, None])
def test_what_is_written_reads_back_and_the_rest_stays(version, addresses):
    header = encode(version, addresses)
    assert parse(header + b"GET / HTTP/1.1\r\n") == (addresses, len(header))
    for cut in range(1, len(header)):                  # arriving in pieces: wait for more
        assert parse(header[:cut]) is None


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
    b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 ::1 ::1 1 2\r\n", b"PROXY " + b"x" * 120,
    b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12,     # version 3
    b"\r\n\r\n\x00\r\nXXXX\n\x21\x11\x00\x0c",
])
def test_anything_else_is_refused(data):
    with pytest.raises(ProxyError):
        parse(data)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(data):
    try:
        parse(data)
    except ProxyError:
        pass
