"""The keys kernel TLS gets (tls/kernel_keys.py, tls/kernel_tls.py), checked
without the kernel: our handshake against OpenSSL's client over a socket
pair, then application records sealed and opened with the derived keys and
sequence numbers (``cryptography``'s AEADs standing in for the kernel)."""

from __future__ import annotations

import asyncio
import ctypes
import socket
import ssl
import struct
import threading

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from dataplane.tls.kernel_keys import (CIPHERS, TLS_1_2, TLS_1_3, Direction, crypto_info,
                                       records, tls13_direction)
from dataplane.tls.kernel_tls import ClientHello, aead_only, handshake
from dataplane.tls.keylog import KeyLog
from dataplane.tls.openssl import LIBSSL, context_pointer
from test_tls import make_cert

APPLICATION = 23


def test_tls13_keys_match_rfc_8448():
    secret = bytes.fromhex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
    way = tls13_direction(secret, CIPHERS["TLS_AES_128_GCM_SHA256"], 0)
    assert way.key.hex() == "9f02283b6c9c07efc26bb9f2ac92e356"     # RFC 8448 section 3
    assert way.iv.hex() == "cf782b88dd83549aadf1e984"


def test_crypto_info_is_the_kernels_layout():
    way = Direction(bytes(range(16)), bytes(range(100, 112)), 7)
    info = crypto_info(TLS_1_3, CIPHERS["TLS_AES_128_GCM_SHA256"], way)
    assert info == struct.pack("=HH", TLS_1_3, 51) + bytes(range(104, 112)) + bytes(range(16)) \
        + bytes(range(100, 104)) + (7).to_bytes(8, "big")
    info = crypto_info(TLS_1_2, CIPHERS["ECDHE-RSA-AES128-GCM-SHA256"], way)
    assert info[4:12] == (7).to_bytes(8, "big")           # explicit nonces start at the sequence
    chacha = crypto_info(TLS_1_3, CIPHERS["TLS_CHACHA20_POLY1305_SHA256"],
                         Direction(bytes(32), bytes(12), 0))
    assert len(chacha) == 4 + 12 + 32 + 0 + 8


def test_records_counts_only_whole_ones():
    record = b"\x17\x03\x03\x00\x02hi"
    assert records(record * 3) == 3 and records(record * 2 + record[:4]) == 2


def test_aead_only_keeps_the_ciphers_the_kernel_takes():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256")
    aead_only(context)
    assert [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"] == \
        ["ECDHE-RSA-AES128-GCM-SHA256"]


def _aead(name: str, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return ChaCha20Poly1305(key) if "CHACHA" in name else AESGCM(key)


def _nonce(way: Direction, seq: int) -> bytes:
    return bytes(a ^ b for a, b in zip(way.iv, seq.to_bytes(12, "big")))


def seal(version: int, name: str, way: Direction, seq: int, data: bytes) -> bytes:
    aead = _aead(name, way.key)
    if version == TLS_1_3:
        size = len(data) + 1 + 16
        header = bytes([APPLICATION]) + b"\x03\x03" + size.to_bytes(2, "big")
        return header + aead.encrypt(_nonce(way, seq), data + bytes([APPLICATION]), header)
    aad = seq.to_bytes(8, "big") + bytes([APPLICATION]) + b"\x03\x03" + len(data).to_bytes(2, "big")
    if CIPHERS[name].salt:                                     # GCM: an explicit nonce
        explicit = seq.to_bytes(8, "big")
        body = explicit + aead.encrypt(way.iv[:4] + explicit, data, aad)
    else:
        body = aead.encrypt(_nonce(way, seq), data, aad)
    return bytes([APPLICATION]) + b"\x03\x03" + len(body).to_bytes(2, "big") + body


def open_record(version: int, name: str, way: Direction, seq: int, record: bytes) -> bytes:
    aead, header, body = _aead(name, way.key), record[:5], record[5:]
    if version == TLS_1_3:
        plain = aead.decrypt(_nonce(way, seq), body, header)
        assert plain[-1] == APPLICATION
        return plain[:-1]
    if CIPHERS[name].salt:
        explicit, body = body[:8], body[8:]
        nonce = way.iv[:4] + explicit
    else:
        nonce = _nonce(way, seq)
    aad = seq.to_bytes(8, "big") + header[:3] + (len(body) - 16).to_bytes(2, "big")
    return aead.decrypt(nonce, body, aad)


def _receive_record(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
        data += sock.recv(65536)
    return data


@pytest.mark.parametrize("version, cipher", [
    ("1.3", "TLS_AES_128_GCM_SHA256"), ("1.3", "TLS_AES_256_GCM_SHA384"),
    ("1.3", "TLS_CHACHA20_POLY1305_SHA256"), ("1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"), ("1.2", "ECDHE-ECDSA-CHACHA20-POLY1305")])
def test_derived_keys_carry_records_both_ways_with_openssl(tmp_path, version, cipher):
    cert, key = make_cert(tmp_path, "a.test", ["a.test"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    keylog = KeyLog()
    keylog.install(server)
    client = ssl.create_default_context(cafile=cert)
    tls_version = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    client.minimum_version = client.maximum_version = tls_version
    if version == "1.3":
        _offer_tls13_suite(client, cipher)      # the client offers the wanted suite alone
    else:
        client.set_ciphers(cipher)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    got: list[bytes] = []

    def peer() -> None:
        with client.wrap_socket(theirs, server_hostname="a.test") as tls:
            tls.sendall(b"ping from the client")
            got.append(tls.recv(100))

    thread = threading.Thread(target=peer)
    thread.start()
    try:
        loop = asyncio.new_event_loop()
        tls, keys = loop.run_until_complete(handshake(loop, ours, server, keylog))
        loop.close()
        assert tls.cipher()[0] == cipher and keys.version == (TLS_1_3 if version == "1.3" else TLS_1_2)
        assert keylog.wanted == {}                       # the secrets were not kept
        ours.setblocking(True)
        record = _receive_record(ours)
        assert open_record(keys.version, cipher, keys.rx, keys.rx.seq, record) == \
            b"ping from the client"
        ours.sendall(seal(keys.version, cipher, keys.tx, keys.tx.seq, b"pong from the server"))
        thread.join(10)
        assert got == [b"pong from the server"]
    finally:
        ours.close()
        thread.join(10)


def _offer_tls13_suite(context: ssl.SSLContext, suite: str) -> None:
    """SSL_CTX_set_ciphersuites (Python's ssl has no API for it)."""
    set_suites = ctypes.CDLL(LIBSSL).SSL_CTX_set_ciphersuites
    set_suites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    assert set_suites(context_pointer(context), suite.encode()) == 1


def test_the_client_random_is_found_across_fragmented_records():
    keylog = KeyLog()
    random = bytes(range(32))
    body = b"\x01\x00\x01\x00" + b"\x03\x03" + random + b"rest of the hello"
    hello = ClientHello(keylog)
    for start in range(0, len(body), 10):        # ten bytes of handshake per record
        part = body[start:start + 10]
        hello.read(b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part)
    assert hello.random == random and random in keylog.wanted
    hello.done()
    assert keylog.wanted == {}
    other = ClientHello(keylog)
    other.read(b"\x16\x03\x01\x00\x05hello")      # not a ClientHello: nothing kept
    assert other.random == b"" and keylog.wanted == {}
