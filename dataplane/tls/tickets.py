"""Session ticket keys shared by every worker and rotated: OpenSSL's ticket
callback (SSL_CTX_set_tlsext_ticket_key_evp_cb), installed through ctypes on
the context handshakes start in, since Python's ssl has no API for it.

A key is 80 bytes: a 16-byte name (sent in the clear in each ticket), a
32-byte HMAC-SHA256 key and a 32-byte AES-256-CBC key, as OpenSSL's own
ticket format has them. New tickets use the first key; a ticket made with
an older key still held is accepted and renewed; one with a key no longer
held (or of another balancer) is ignored and the client makes a full
handshake. The control process makes the keys and rotates them
(``balancer.tls.ticket_rotation``); workers get them in the state snapshot.
"""

from __future__ import annotations

import ctypes
import os
import ssl
from typing import TypeAlias

import structlog

from .openssl import LIBCRYPTO, LIBSSL, context_pointer

log = structlog.get_logger("l7lb.tls")

KEY_SIZE = 80
NAME, HMAC, AES = slice(0, 16), slice(16, 48), slice(48, 80)
_UTF8_STRING, _OCTET_STRING = 4, 5
_UNMODIFIED = ctypes.c_size_t(-1).value


def new_key() -> bytes:
    return os.urandom(KEY_SIZE)


def split_keys(raw: bytes) -> list[bytes]:
    """Keys as a snapshot carries them, joined (the current one first)."""
    return [raw[i:i + KEY_SIZE] for i in range(0, len(raw), KEY_SIZE)]


class _Param(ctypes.Structure):      # OSSL_PARAM
    _fields_ = [("key", ctypes.c_char_p), ("data_type", ctypes.c_uint),
                ("data", ctypes.c_void_p), ("data_size", ctypes.c_size_t),
                ("return_size", ctypes.c_size_t)]


Pointer = int | None                           # a void * from ctypes
Bytes: TypeAlias = "ctypes._Pointer[ctypes.c_ubyte]"   # an unsigned char * from ctypes
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ubyte),
                             ctypes.POINTER(ctypes.c_ubyte), ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_int)


class _OpenSSL:
    def __init__(self) -> None:
        ssl_lib, crypto = ctypes.CDLL(LIBSSL), ctypes.CDLL(LIBCRYPTO)
        self.set_callback = ssl_lib.SSL_CTX_set_tlsext_ticket_key_evp_cb
        self.set_callback.argtypes = [ctypes.c_void_p, _CALLBACK]
        self.aes = crypto.EVP_aes_256_cbc
        self.aes.restype = ctypes.c_void_p
        init = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                ctypes.c_void_p)
        self.encrypt_init, self.decrypt_init = crypto.EVP_EncryptInit_ex, crypto.EVP_DecryptInit_ex
        self.encrypt_init.argtypes = self.decrypt_init.argtypes = init
        self.mac_params = crypto.EVP_MAC_CTX_set_params
        self.mac_params.argtypes = (ctypes.c_void_p, ctypes.POINTER(_Param))
        self.random = crypto.RAND_bytes
        self.random.argtypes = [ctypes.c_void_p, ctypes.c_int]


class TicketKeys:
    """The keys of one context (the listener's front context in a worker)."""

    def __init__(self, context: ssl.SSLContext, keys: list[bytes]) -> None:
        self.keys = keys
        self.lib = _OpenSSL()
        self.callback = _CALLBACK(self._ticket)     # kept: OpenSSL holds a raw pointer
        self.lib.set_callback(context_pointer(context), self.callback)

    def _ticket(self, _ssl: Pointer, name: Bytes, iv: Bytes, cipher_ctx: Pointer,
                mac_ctx: Pointer, encrypt: int) -> int:
        try:
            return self._encrypt(name, iv, cipher_ctx, mac_ctx) if encrypt \
                else self._decrypt(name, iv, cipher_ctx, mac_ctx)
        except Exception:        # an exception cannot cross into OpenSSL: no ticket then
            log.exception("session ticket callback failed")
            return -1 if encrypt else 0

    def _encrypt(self, name: Bytes, iv: Bytes, cipher_ctx: Pointer, mac_ctx: Pointer) -> int:
        key = self.keys[0]
        ctypes.memmove(name, key[NAME], 16)
        if self.lib.random(iv, 16) != 1:
            return -1
        iv_bytes = ctypes.string_at(iv, 16)
        ok = self.lib.encrypt_init(cipher_ctx, self.lib.aes(), None, key[AES], iv_bytes)
        return 1 if ok == 1 and self._mac(mac_ctx, key) else -1

    def _decrypt(self, name: Bytes, iv: Bytes, cipher_ctx: Pointer, mac_ctx: Pointer) -> int:
        wanted = ctypes.string_at(name, 16)
        for age, key in enumerate(self.keys):
            if key[NAME] == wanted:
                ok = self.lib.decrypt_init(cipher_ctx, self.lib.aes(), None, key[AES],
                                           ctypes.string_at(iv, 16))
                if ok != 1 or not self._mac(mac_ctx, key):
                    return -1
                return 1 if age == 0 else 2        # 2: accepted, and a new ticket is sent
        return 0                                   # unknown key: a full handshake

    def _mac(self, mac_ctx: Pointer, key: bytes) -> bool:
        digest, secret = ctypes.create_string_buffer(b"SHA256"), ctypes.create_string_buffer(
            key[HMAC], 32)
        params = (_Param * 3)(
            _Param(b"digest", _UTF8_STRING, ctypes.cast(digest, ctypes.c_void_p), 6, _UNMODIFIED),
            _Param(b"key", _OCTET_STRING, ctypes.cast(secret, ctypes.c_void_p), 32, _UNMODIFIED),
            _Param(None, 0, None, 0, 0))
        return bool(self.lib.mac_params(mac_ctx, params) == 1)
