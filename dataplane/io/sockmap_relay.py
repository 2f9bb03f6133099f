"""relay: sockmap — two sockets joined inside the kernel (bpf/lb_relay.bpf.c):
the bytes never reach user space and no splice call is made. User space only
watches each socket for its peer's EOF or reset, and passes them on as the
splice relay does: a reset becomes a reset of the other peer; an EOF becomes
shutdown(SHUT_WR) of the other socket once every byte that came before it has
gone into that socket's send side (the kernel moves them on a work queue, so
this is checked in TCP_INFO counters, every FLUSH_CHECK seconds; a FIN counts
one in the kernel's received bytes).
"""

from __future__ import annotations

import socket
from functools import partial
from typing import Callable, Protocol

import structlog

from .reactor import Reactor
from .relay import Relay

FLUSH_CHECK = 0.001
log = structlog.get_logger("l7lb.relay")


class Joiner(Protocol):
    """What the relay needs of the loaded BPF program (kernel.sockmap.Sockmap)."""
    def join(self, a: socket.socket, b: socket.socket) -> tuple[int, int]: ...
    def part(self, cookies: tuple[int, int]) -> None: ...
    def received(self, sock: socket.socket) -> int: ...
    def written(self, sock: socket.socket) -> int: ...
    def consumed(self, sock: socket.socket) -> int: ...


class SockmapRelay(Relay):
    def __init__(self, reactor: Reactor, a: socket.socket, b: socket.socket,
                 on_closed: Callable[[Relay], None], joiner: Joiner) -> None:
        super().__init__(reactor, a, b, on_closed)
        self.kernel = joiner
        self.cookies: tuple[int, int] | None = None
        # Per direction (a->b, b->a): the source's bytes taken by user space
        # before the join, and what the destination had been given then.
        self.base: dict[int, tuple[int, int]] = {}
        self.eof: set[int] = set()       # sources whose EOF came (their FIN counted)
        self.ended: set[int] = set()     # directions shut down after it
        self.final: int | None = None     # moved, counted before the sockets close

    def start(self) -> None:
        a, b = self.a, self.b
        c = self.kernel
        try:
            self.base = {a.fileno(): (c.consumed(a), c.written(b)),
                         b.fileno(): (c.consumed(b), c.written(a))}
            self.cookies = self.kernel.join(a, b)
        except OSError:
            self.abort()
            return
        for src, dst in ((a, b), (b, a)):
            self.reactor.add_reader(src.fileno(), partial(self._readable, src, dst))

    @property
    def moved(self) -> int:
        if self.final is not None:
            return self.final
        try:
            return sum(self.kernel.received(s) - self.base[s.fileno()][0]
                       for s in (self.a, self.b)) - len(self.eof)
        except (OSError, KeyError):
            return 0

    def _readable(self, src: socket.socket, dst: socket.socket) -> None:
        """The kernel takes the data; what wakes us is an EOF or an error.

        Bytes readable here came in the microseconds of the join after the
        socket entered the map and before its peer was named (the program
        passed them to user space). Sending them from here could put them
        after newer bytes the kernel already moved, so the pair is reset:
        rare, but never out of order."""
        try:
            stray = src.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()        # a reset (or failure) is passed on as a reset
            return
        if stray:
            log.warning("sockmap relay: bytes arrived while joining; connection reset")
            self.abort()
            return
        self.reactor.remove_reader(src.fileno())
        self.eof.add(src.fileno())
        self._shut_when_flushed(src, dst)

    def _shut_when_flushed(self, src: socket.socket, dst: socket.socket) -> None:
        if self.closed:
            return
        taken, given = self.base[src.fileno()]
        try:
            flushed = (self.kernel.written(dst) - given
                       >= self.kernel.received(src) - taken - 1)
        except OSError:
            self.abort()
            return
        if not flushed:
            self.loop.call_later(FLUSH_CHECK, self._shut_when_flushed, src, dst)
            return
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.ended.add(src.fileno())
        if len(self.ended) == 2:
            self.close()

    def _release(self) -> None:
        self.final = self.moved
        for sock in (self.a, self.b):
            if sock.fileno() not in self.ended:
                self.reactor.remove_reader(sock.fileno())
        if self.cookies is not None:
            self.kernel.part(self.cookies)
