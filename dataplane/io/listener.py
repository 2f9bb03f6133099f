"""Listening sockets: one per worker, on the same address through SO_REUSEPORT."""

from __future__ import annotations

import socket


def bound(bind: str, port: int) -> socket.socket:
    """A non-blocking socket bound to the address, not yet listening (so that a
    bind error stops the start before anything else); SO_REUSEPORT lets every
    worker have its own. ``open_listeners`` makes them listen."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((bind, port))
    sock.setblocking(False)
    return sock


def open_listeners(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.listen(socket.SOMAXCONN)
