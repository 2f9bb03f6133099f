"""Readiness callbacks for the proxy's raw sockets, from one epoll set.

uvloop's own add_reader() watches each fd with a libuv poll handle, and libuv
closes such a handle for good when epoll reports EPOLLERR, which is what a
peer's RST produces: the callback is never called again and the connection
hangs. So raw sockets are registered here instead: one epoll fd, itself
watched by the loop, and every event (errors included) reaches its callback,
where recv/send/splice report the error properly.
"""

from __future__ import annotations

import asyncio
import errno
import select
from typing import Callable

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_FAIL = select.EPOLLERR | select.EPOLLHUP
MAX_EVENTS = 512


class Reactor:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self._writers: dict[int, Callable[[], None]] = {}
        self._masks: dict[int, int] = {}
        loop.add_reader(self._epoll.fileno(), self._dispatch)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def _update(self, fd: int) -> None:
        mask = (_IN if fd in self._readers else 0) | (_OUT if fd in self._writers else 0)
        old = self._masks.get(fd, 0)
        if mask == old:
            return
        try:
            if not mask:
                del self._masks[fd]
                self._epoll.unregister(fd)
                return
            self._masks[fd] = mask
            if old:
                self._epoll.modify(fd, mask)
            else:
                self._epoll.register(fd, mask)
        except OSError as exc:
            self._repair(fd, mask, exc)

    def _repair(self, fd: int, mask: int, exc: OSError) -> None:
        # A socket closed while registered leaves the epoll set by itself; a new
        # socket may then reuse its number.
        if exc.errno == errno.ENOENT and mask:
            self._epoll.register(fd, mask)
        elif exc.errno == errno.EEXIST and mask:
            self._epoll.modify(fd, mask)
        elif exc.errno not in (errno.ENOENT, errno.EBADF):
            raise exc

    def _dispatch(self) -> None:
        readers, writers = self._readers, self._writers
        for fd, events in self._epoll.poll(0, MAX_EVENTS):
            if events & (_IN | _FAIL):
                callback = readers.get(fd)
                if callback is not None:
                    callback()
            if events & (_OUT | _FAIL):
                callback = writers.get(fd)
                if callback is not None:
                    callback()
