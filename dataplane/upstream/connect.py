"""One non-blocking connect to a host, for its pool: the socket made with
the host's congestion control set before connect, and the pool's count of
open connections taken from the start (the socket's receiver takes it over;
a connect abandoned or failed gives it back)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Callable, Protocol

from ..io.reactor import Reactor
from ..kernel.transport import Transport
from .host import Host

SocketConnected = Callable[[socket.socket | None, OSError | None], None]


class OpenCount(Protocol):
    """The host pool a connect counts in."""
    host: Host
    open: int


class Dialer(Protocol):
    """What a connect needs of its pool."""
    reactor: Reactor
    transport: Transport
    loop: asyncio.AbstractEventLoop


class Connect:
    """One non-blocking connect in progress; ``cancel`` abandons it.

    It holds one of its host pool's ``open`` from the start; whoever receives
    the socket takes that over."""

    __slots__ = ("pool", "slot", "sock", "callback", "waiting", "on_cancel", "cancelled")

    def __init__(self, pool: Dialer, slot: OpenCount, callback: SocketConnected,
                 on_cancel: Callable[[], None]) -> None:
        """``on_cancel``: the pool's turn handed on (another may connect)."""
        self.pool, self.slot = pool, slot
        self.on_cancel = on_cancel
        self.callback: SocketConnected | None = callback
        host = slot.host
        self.sock = socket.socket(host.family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pool.transport.before_connect(self.sock, host)
        self.waiting = False
        self.cancelled = False     # also once connected: its receiver then lets it go
        slot.open += 1
        assert host.address is not None, "a host is chosen only once resolved"
        err = self.sock.connect_ex(host.address)
        if err == errno.EINPROGRESS:
            self.waiting = True
            pool.reactor.add_writer(self.sock.fileno(), self._writable)
        else:
            pool.loop.call_soon(self._complete, err)

    def _writable(self) -> None:
        self.pool.reactor.remove_writer(self.sock.fileno())
        self.waiting = False
        self._complete(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def _complete(self, err: int) -> None:
        callback = self.callback
        if callback is None:
            return
        if err:
            self._give_up()
            callback(None, OSError(err, os.strerror(err)))
        else:
            self.callback = None
            self.pool.transport.connected(self.sock, self.slot.host)
            callback(self.sock, None)

    def cancel(self) -> None:
        self.cancelled = True
        if self.callback is not None:
            if self.waiting:
                self.pool.reactor.remove_writer(self.sock.fileno())
            self._give_up()
            self.on_cancel()

    def _give_up(self) -> None:
        self.callback = None
        self.slot.open -= 1
        self.sock.close()
