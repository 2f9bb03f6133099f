"""TCP mode with ``accept_proxy``: read a trusted balancer's PROXY header
before anything else, then hand the connection on with the client it names
and the client's bytes that came with the header."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Callable

import structlog

from ..io.stream import reset
from ..proxyproto.header import Addresses, ProxyError, parse

if TYPE_CHECKING:
    from ..site import Site

log = structlog.get_logger("l7lb.tcp")
MAX_PREAMBLE = 4096       # more than any header we read, TLVs included
Start = Callable[[Addresses | None, bytes], None]


class ProxyPreamble:
    """Waits (at most ``timeouts.connect``) for the header; a bad or missing
    one resets the connection and counts it as refused."""

    def __init__(self, site: "Site", sock: socket.socket, peer: str, start: Start) -> None:
        self.site, self.sock, self.peer, self.start = site, sock, peer, start
        self.data = b""
        self.deadline = site.clock.now + site.connect_timeout
        site.track(self)
        site.reactor.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            chunk = self.sock.recv(MAX_PREAMBLE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        self.data += chunk
        try:
            read = parse(self.data) if chunk else None
        except ProxyError as exc:
            self._refuse(str(exc))
            return
        if read is None:
            if not chunk or len(self.data) >= MAX_PREAMBLE:
                self._refuse("no complete PROXY header")
            return
        addresses, size = read
        self._done()
        self.start(addresses, self.data[size:])

    def _done(self) -> None:
        self.site.reactor.remove_reader(self.sock.fileno())
        self.site.forget(self)

    def _refuse(self, why: str) -> None:
        self._done()
        self.site.stats.untrusted += 1
        log.info("connection refused", client=self.peer, reason=why)
        reset(self.sock)
        self.sock.close()

    def check(self, now: float) -> None:
        if now >= self.deadline:
            self._refuse("no PROXY header within timeouts.connect")

    def shutdown(self) -> None:
        self._refuse("stopping")

    def abort(self) -> None:
        self._refuse("stopping")
