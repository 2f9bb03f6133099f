"""OpenSSL's own objects behind Python's ssl, for the callbacks Python has no
API for (ticket keys, the key log); through ctypes."""

from __future__ import annotations

import ctypes
import ssl

LIBSSL, LIBCRYPTO = "libssl.so.3", "libcrypto.so.3"


def context_pointer(context: ssl.SSLContext) -> int:
    """The SSL_CTX* inside an SSLContext (the first field after the object
    header in CPython's PySSLContext), checked against its options."""
    get_options = ctypes.CDLL(LIBSSL).SSL_CTX_get_options
    get_options.restype, get_options.argtypes = ctypes.c_uint64, [ctypes.c_void_p]
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or get_options(pointer) != context.options:
        raise OSError("cannot find OpenSSL's context inside Python's")
    return pointer
