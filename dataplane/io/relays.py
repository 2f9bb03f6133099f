"""Choosing a relay engine for a joined pair of sockets (TCP mode, upgraded
HTTP streams)."""

from __future__ import annotations

import socket
from typing import Callable

from .reactor import Reactor
from .relay import CopyRelay, Relay, SpliceRelay
from .sockmap_relay import Joiner, SockmapRelay


def make_relay(engine: str, reactor: Reactor, a: socket.socket, b: socket.socket,
               on_closed: Callable[[Relay], None], buffer: int,
               sockmap: Joiner | None = None) -> Relay:
    """``engine``: the worker's choice; sockmap only with its program loaded;
    auto: splice, each direction trying copy once it carries bulk."""
    if engine == "sockmap" and sockmap is not None:
        return SockmapRelay(reactor, a, b, on_closed, sockmap)
    if engine in ("splice", "sockmap", "auto"):
        return SpliceRelay(reactor, a, b, on_closed, choose=engine == "auto")
    return CopyRelay(reactor, a, b, on_closed, buffer)
