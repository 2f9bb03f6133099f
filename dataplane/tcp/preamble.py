"""TCP mode: what is read of a connection before it is relayed. With
``accept_proxy``, a trusted balancer's PROXY header (the client it names);
with routes, the TLS ClientHello's server name (the group it goes to). The
bytes read after what was needed are sent on first, so the backend sees the
stream untouched (a ClientHello included)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Callable

import structlog

from ..io.stream import reset
from ..proxyproto.header import parse
from .client_hello import NEED_MORE, server_name

if TYPE_CHECKING:
    from ..worker_view import WorkerView

log = structlog.get_logger("l7lb.tcp")
MAX_PREAMBLE = 4096       # more than any PROXY header we read, TLVs included
WAIT = object()           # a parser's "not yet"


def proxy_header(data: bytes) -> Any:
    """(addresses, size) of a PROXY header, or WAIT; raises ProxyError."""
    read = parse(data)
    return WAIT if read is None else read


def client_hello(data: bytes) -> Any:
    """The ClientHello's server name (None: it sent none), or WAIT; raises NotTls."""
    name = server_name(data)
    return WAIT if name is NEED_MORE else name


class Preamble:
    """Reads until ``parse`` has what it needs, within ``timeout``, then calls
    ``start(result, data)`` with all bytes read; a parse error, EOF first or
    ``limit`` bytes without an answer reset the connection (counted as refused)."""

    def __init__(self, worker: "WorkerView", sock: socket.socket, peer: str,
                 parse: Callable[[bytes], Any], start: Callable[[Any, bytes], None],
                 what: str, timeout: float, limit: int, data: bytes = b"") -> None:
        self.worker, self.sock, self.peer = worker, sock, peer
        self.parse, self.start, self.what, self.limit = parse, start, what, limit
        self.data = data
        self.deadline = worker.clock.now + timeout
        self.reading = False
        if not data or not self._try():
            worker.track(self)
            worker.reactor.add_reader(sock.fileno(), self._readable)
            self.reading = True

    def _readable(self) -> None:
        try:
            chunk = self.sock.recv(self.limit)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._refuse(f"closed before a complete {self.what}")
            return
        self.data += chunk
        self._try()

    def _try(self) -> bool:
        """True once the connection has left this preamble (started or refused)."""
        try:
            result = self.parse(self.data)
        except ValueError as exc:
            self._refuse(str(exc))
            return True
        if result is WAIT:
            if len(self.data) >= self.limit:
                self._refuse(f"no complete {self.what} in {self.limit} bytes")
                return True
            return False
        self._done()
        self.start(result, self.data)
        return True

    def _done(self) -> None:
        if self.reading:
            self.reading = False
            self.worker.reactor.remove_reader(self.sock.fileno())
            self.worker.forget(self)

    def _refuse(self, why: str) -> None:
        self._done()
        self.worker.stats.untrusted += 1
        log.info("connection refused", client=self.peer, reason=why)
        reset(self.sock)
        self.sock.close()

    def check(self, now: float) -> None:
        if now >= self.deadline:
            self._refuse(f"no {self.what} in time")

    def shutdown(self) -> None:
        self._refuse("stopping")

    def abort(self) -> None:
        self._refuse("stopping")


