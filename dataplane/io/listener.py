"""Listening sockets: one per worker, on the same address through SO_REUSEPORT."""

from __future__ import annotations

import socket


def listen(bind: str, port: int) -> socket.socket:
    """A non-blocking listening socket; SO_REUSEPORT lets every worker have its own."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((bind, port))
    sock.listen(socket.SOMAXCONN)
    sock.setblocking(False)
    return sock
