"""What a request is hashed by: ``balancer.hash_key``."""

from __future__ import annotations

from typing import Callable, Sequence
from urllib.parse import parse_qsl

Headers = Sequence[tuple[bytes, bytes]]
KeyOf = Callable[[bytes, bytes, Headers], bytes]   # (client ip, target, headers) -> key


def needs_headers(spec: str) -> bool:
    """Whether the key is read from the request's headers (header:, cookie:)."""
    return spec.partition(":")[0] in ("header", "cookie")


def key_function(spec: str) -> KeyOf:
    """What a request is hashed by; when that part is absent, the client IP."""
    kind, _, name = spec.partition(":")
    wanted = name.lower().encode()
    if kind == "client_ip":
        return lambda ip, target, headers: ip
    if kind == "path":
        return lambda ip, target, headers: target.split(b"?", 1)[0]
    if kind == "header":
        def by_header(ip: bytes, target: bytes, headers: Headers) -> bytes:
            for header, value in headers:
                if header.lower() == wanted:
                    return value
            return ip
        return by_header
    if kind == "cookie":
        def by_cookie(ip: bytes, target: bytes, headers: Headers) -> bytes:
            for header, value in headers:
                if header.lower() == b"cookie":
                    for pair in value.split(b";"):
                        cookie, _, content = pair.strip().partition(b"=")
                        if cookie.lower() == wanted:
                            return content
            return ip
        return by_cookie
    if kind == "query":
        def by_query(ip: bytes, target: bytes, headers: Headers) -> bytes:
            _, _, query = target.partition(b"?")
            for parameter, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if parameter.lower().encode() == wanted:
                    return value.encode("latin-1")
            return ip
        return by_query
    raise ValueError(f"unknown hash_key {spec!r}")
