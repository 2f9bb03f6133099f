"""The PROXY protocol (HAProxy's, versions 1 and 2): the header that tells
the next hop who the client was. Building and reading it; no I/O.

Only what a TCP proxy needs: TCP over IPv4 and IPv6, and the LOCAL command
(v2) or UNKNOWN (v1) for connections of the balancer's own (health probes).
TLVs of a v2 header are skipped when read and never written.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import NamedTuple

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107                      # the longest v1 line, CRLF included
_V2_HEAD = struct.Struct("!12sBBH")


class Addresses(NamedTuple):
    """Who connected (source) to what (destination)."""
    src: str
    src_port: int
    dst: str
    dst_port: int


class ProxyError(ValueError):
    """Not a valid PROXY header."""


def encode(version: str, addresses: Addresses | None) -> bytes:
    """The header for a connection on behalf of ``addresses`` (None: the
    balancer's own connection)."""
    return encode_v2(addresses) if version == "v2" else encode_v1(addresses)


def encode_v1(addresses: Addresses | None) -> bytes:
    if addresses is None:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP6" if ":" in addresses.src else "TCP4"
    return (f"PROXY {family} {addresses.src} {addresses.dst} {addresses.src_port} "
            f"{addresses.dst_port}\r\n").encode()


def encode_v2(addresses: Addresses | None) -> bytes:
    if addresses is None:                                   # LOCAL, no address
        return _V2_HEAD.pack(V2_SIGNATURE, 0x20, 0x00, 0)
    six = ":" in addresses.src
    family = socket.AF_INET6 if six else socket.AF_INET
    body = (socket.inet_pton(family, addresses.src) + socket.inet_pton(family, addresses.dst)
            + struct.pack("!HH", addresses.src_port, addresses.dst_port))
    return _V2_HEAD.pack(V2_SIGNATURE, 0x21, 0x21 if six else 0x11, len(body)) + body


def parse(data: bytes) -> tuple[Addresses | None, int] | None:
    """(addresses, header length) from the start of ``data``; addresses None
    for a LOCAL or UNKNOWN header; None when more bytes are needed. Raises
    ProxyError when ``data`` does not start with a valid header."""
    if data[:1] == b"\r":
        return _parse_v2(data)
    if data[:1] == b"P":
        return _parse_v1(data)
    if data:
        raise ProxyError("no PROXY header")
    return None


def _parse_v1(data: bytes) -> tuple[Addresses | None, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end == -1:
        if len(data) >= V1_MAX or not (data.startswith(b"PROXY ") or b"PROXY ".startswith(data)):
            raise ProxyError("PROXY v1 line too long or malformed")
        return None
    words = data[:end].decode("ascii", "replace").split(" ")
    if words[0] != "PROXY":
        raise ProxyError("no PROXY header")
    if words[1:2] == ["UNKNOWN"]:
        return None, end + 2
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyError("malformed PROXY v1 line")
    try:
        src, dst = ipaddress.ip_address(words[2]), ipaddress.ip_address(words[3])
        ports = int(words[4]), int(words[5])
    except ValueError:
        raise ProxyError("bad address or port in PROXY v1 line") from None
    if not all(0 <= p <= 65535 for p in ports) or src.version != (4 if words[1] == "TCP4" else 6):
        raise ProxyError("bad address or port in PROXY v1 line")
    return Addresses(str(src), ports[0], str(dst), ports[1]), end + 2


def _parse_v2(data: bytes) -> tuple[Addresses | None, int] | None:
    if len(data) < 16:
        if not V2_SIGNATURE.startswith(data[:12]):
            raise ProxyError("no PROXY header")
        return None
    signature, command, family, size = _V2_HEAD.unpack_from(data)
    if signature != V2_SIGNATURE or command >> 4 != 2:
        raise ProxyError("not a PROXY v2 header")
    if len(data) < 16 + size:
        return None
    body = data[16:16 + size]
    if command & 0x0F == 0:                                  # LOCAL
        return None, 16 + size
    if command & 0x0F != 1:
        raise ProxyError("unknown PROXY v2 command")
    if family == 0x11 and size >= 12:
        src, dst = socket.inet_ntop(socket.AF_INET, body[:4]), socket.inet_ntop(
            socket.AF_INET, body[4:8])
        ports = struct.unpack_from("!HH", body, 8)
    elif family == 0x21 and size >= 36:
        src, dst = socket.inet_ntop(socket.AF_INET6, body[:16]), socket.inet_ntop(
            socket.AF_INET6, body[16:32])
        ports = struct.unpack_from("!HH", body, 32)
    else:
        return None, 16 + size                               # UNSPEC, UNIX...: no address
    return Addresses(src, ports[0], dst, ports[1]), 16 + size
