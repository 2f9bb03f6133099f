"""What the kernel needs to take over a TLS session (sans-IO): the record
keys and IVs derived from the secrets OpenSSL logs, in the ``struct
tls12_crypto_info_*`` layouts of <linux/tls.h>, with each direction's next
record sequence number.

TLS 1.3 (RFC 8446 7.3): key and IV are HKDF-Expand-Label of the traffic
secret. TLS 1.2 (RFC 5246 6.3): they come from the key block, the PRF of the
master secret over both randoms. Only the AEAD ciphers the kernel offers are
known here: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
"""

from __future__ import annotations

import hmac
import struct
from typing import NamedTuple

TLS_1_2, TLS_1_3 = 0x0303, 0x0304
RECORD_HEADER = 5
HANDSHAKE, CLIENT_HELLO, SERVER_HELLO = 22, 1, 2
_RANDOM = slice(RECORD_HEADER + 6, RECORD_HEADER + 38)   # after type, length and version


class Cipher(NamedTuple):
    kernel: int            # TLS_CIPHER_* of <linux/tls.h>
    key: int               # key length
    salt: int              # the fixed part of the nonce the kernel keeps apart
    hash: str              # of the PRF or HKDF


_AES128, _AES256, _CHACHA = (51, 16, 4), (52, 32, 4), (54, 32, 0)
# OpenSSL's names (SSLObject.cipher()[0]) for both versions.
CIPHERS = {
    "TLS_AES_128_GCM_SHA256": Cipher(*_AES128, "sha256"),
    "TLS_AES_256_GCM_SHA384": Cipher(*_AES256, "sha384"),
    "TLS_CHACHA20_POLY1305_SHA256": Cipher(*_CHACHA, "sha256"),
    **{name: Cipher(*_AES128, "sha256") for name in (
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES128-GCM-SHA256")},
    **{name: Cipher(*_AES256, "sha384") for name in (
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "DHE-RSA-AES256-GCM-SHA384")},
    **{name: Cipher(*_CHACHA, "sha256") for name in (
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305", "DHE-RSA-CHACHA20-POLY1305")},
}
NONCE = 12                 # every one of these AEADs takes a 96-bit nonce


class Direction(NamedTuple):
    key: bytes
    iv: bytes              # NONCE bytes: the fixed IV (1.3, ChaCha) or salt + 8 more (1.2 GCM)
    seq: int               # the sequence number of the next record


def crypto_info(version: int, cipher: Cipher, way: Direction) -> bytes:
    """The setsockopt(SOL_TLS, TLS_TX or TLS_RX) argument. For TLS 1.2 GCM
    the 8 bytes after the salt start the explicit nonces the kernel writes (it
    counts them up per record); the sequence number is a unique start."""
    rec_seq = way.seq.to_bytes(8, "big")
    salt, iv = way.iv[:cipher.salt], way.iv[cipher.salt:]
    if version == TLS_1_2 and cipher.salt:
        iv = rec_seq
    return struct.pack("=HH", version, cipher.kernel) + iv + way.key + salt + rec_seq


def tls13_direction(secret: bytes, cipher: Cipher, seq: int) -> Direction:
    return Direction(_expand_label(secret, b"key", cipher.key, cipher.hash),
                     _expand_label(secret, b"iv", NONCE, cipher.hash), seq)


def _expand_label(secret: bytes, label: bytes, length: int, digest: str) -> bytes:
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"     # empty context
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(secret, block + info + bytes([counter]), digest)
        out += block
        counter += 1
    return out[:length]


def tls12_directions(master: bytes, server_random: bytes, client_random: bytes,
                     cipher: Cipher, seq: int) -> tuple[Direction, Direction]:
    """(client's, server's) from the key block: no MAC keys for AEADs, then
    both write keys, then both fixed IVs (the salt for GCM, 12 bytes for
    ChaCha20). A GCM direction's IV is its salt padded to NONCE."""
    fixed = cipher.salt or NONCE
    block = _prf(master, b"key expansion" + server_random + client_random,
                 2 * (cipher.key + fixed), cipher.hash)
    keys, ivs = block[:2 * cipher.key], block[2 * cipher.key:]
    pad = bytes(NONCE - fixed)
    return (Direction(keys[:cipher.key], ivs[:fixed] + pad, seq),
            Direction(keys[cipher.key:], ivs[fixed:] + pad, seq))


def _prf(secret: bytes, seed: bytes, length: int, digest: str) -> bytes:
    """TLS 1.2's P_hash."""
    out, a = b"", seed
    while len(out) < length:
        a = hmac.digest(secret, a, digest)
        out += hmac.digest(secret, a + seed, digest)
    return out[:length]


def records(data: bytes) -> int:
    """How many whole TLS records ``data`` holds."""
    count = offset = 0
    while offset + RECORD_HEADER <= len(data):
        offset += RECORD_HEADER + int.from_bytes(data[offset + 3:offset + 5], "big")
        if offset > len(data):
            break
        count += 1
    return count


def hello_random(record: bytes) -> bytes | None:
    """The random of the ServerHello that starts ``record``."""
    if len(record) < _RANDOM.stop or record[0] != HANDSHAKE or record[RECORD_HEADER] != SERVER_HELLO:
        return None
    return record[_RANDOM]

