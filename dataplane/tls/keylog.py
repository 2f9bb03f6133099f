"""The session secrets of the handshakes we hand to the kernel, from
OpenSSL's key log callback (SSL_CTX_set_keylog_callback, the NSS key log
lines: ``LABEL <client random> <secret>``).

Secrets are kept only for the client randoms a handshake asked for, and
only until it takes them: a connection left in user-space TLS never has its
secrets kept. OpenSSL reads the callback from the context a connection is in
at the time, so every context of the listener gets it (the SNI callback
moves connections between them).
"""

from __future__ import annotations

import ctypes
import ssl

from .openssl import LIBSSL, context_pointer

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


class KeyLog:
    def __init__(self) -> None:
        self.wanted: dict[bytes, dict[str, bytes]] = {}     # client random -> label -> secret
        self.callback = _CALLBACK(self._line)                # kept: OpenSSL holds a raw pointer
        self._set = ctypes.CDLL(LIBSSL).SSL_CTX_set_keylog_callback
        self._set.argtypes = [ctypes.c_void_p, _CALLBACK]

    def install(self, context: ssl.SSLContext) -> None:
        self._set(context_pointer(context), self.callback)

    def want(self, client_random: bytes) -> dict[str, bytes]:
        """Start keeping the secrets of this handshake; ``drop`` ends it."""
        return self.wanted.setdefault(client_random, {})

    def drop(self, client_random: bytes) -> None:
        self.wanted.pop(client_random, None)

    def _line(self, _ssl: int | None, line: bytes | None) -> None:
        try:
            label, client_random, secret = (line or b"").split()
            secrets = self.wanted.get(bytes.fromhex(client_random.decode()))
            if secrets is not None:
                secrets[label.decode()] = bytes.fromhex(secret.decode())
        except ValueError:      # nothing may raise into OpenSSL; a line we cannot read is not ours
            pass
