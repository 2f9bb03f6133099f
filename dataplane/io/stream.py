"""A non-blocking socket on the event loop, with a bounded write buffer.

The proxy works on raw sockets rather than asyncio transports so that the same
file descriptor can be handed to splice(2) for large bodies and upgraded
streams. Readiness comes from the Reactor (see reactor.py for why). Reads are delivered to an owner object (``on_data``, ``on_eof``,
``on_error``); writes go straight to the kernel and only what the kernel
refuses is queued. Owners apply back-pressure with ``pending`` and
``when_drained``.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections import deque
from typing import Callable, Protocol

from .reactor import Reactor

READ_SIZE = 256 * 1024
# One receive buffer per process: recv(n) would allocate n bytes per call, and
# at 256 KiB that allocation costs several times the syscall itself.
_BUFFER = bytearray(READ_SIZE)
_VIEW = memoryview(_BUFFER)
_LINGER_RESET = struct.pack("ii", 1, 0)


class StreamOwner(Protocol):
    def on_data(self, data: bytes) -> None: ...
    def on_eof(self) -> None: ...
    def on_error(self, exc: OSError) -> None: ...


class Stream:
    __slots__ = ("reactor", "loop", "sock", "fd", "owner", "pending", "closed", "reading",
                 "_out", "_writing", "_drain_waiters", "_shut_after_drain", "_error")

    def __init__(self, reactor: Reactor, sock: socket.socket, owner: StreamOwner) -> None:
        self.reactor = reactor
        self.loop = reactor.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.owner = owner
        self.pending = 0          # bytes queued in user space, not yet in the kernel
        self.closed = False
        self.reading = False
        self._out: deque[memoryview] = deque()
        self._writing = False
        self._drain_waiters: list[Callable[[], None]] = []
        self._shut_after_drain = False
        self._error: OSError | None = None

    # -- reading ---------------------------------------------------------
    def start_reading(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.reactor.add_reader(self.fd, self._on_readable)

    def stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.reactor.remove_reader(self.fd)

    def _on_readable(self) -> None:
        try:
            size = self.sock.recv_into(_BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.stop_reading()
            self.owner.on_error(exc)
            return
        if size:
            self.owner.on_data(_VIEW[:size].tobytes())
        else:
            self.stop_reading()
            self.owner.on_eof()

    # -- writing ---------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send now what the kernel takes; queue the rest. Errors surface via on_error."""
        if self.closed or self._error is not None:
            return
        if not self._out:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fail(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        else:
            data = memoryview(data)
        self._out.append(data)
        self.pending += len(data)
        if not self._writing:
            self._writing = True
            self.reactor.add_writer(self.fd, self._on_writable)

    def _on_writable(self) -> None:
        out = self._out
        while out:
            chunk = out[0]
            try:
                sent = self.sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(exc)
                return
            self.pending -= sent
            if sent < len(chunk):
                out[0] = chunk[sent:]
                return
            out.popleft()
        self._writing = False
        self.reactor.remove_writer(self.fd)
        self._drained()

    def _drained(self) -> None:
        if self._shut_after_drain:
            self._shutdown_write()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            waiter()

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call back once every queued byte is in the kernel (now, if none is queued)."""
        if self._out:
            self._drain_waiters.append(callback)
        else:
            callback()

    def _fail(self, exc: OSError) -> None:
        # Reported from the loop, not from inside the caller's write().
        self._error = exc
        self._out.clear()
        self.pending = 0
        if self._writing:
            self._writing = False
            self.reactor.remove_writer(self.fd)
        self.loop.call_soon(self._report_error, exc)

    def _report_error(self, exc: OSError) -> None:
        if not self.closed:
            self.owner.on_error(exc)

    # -- ending ----------------------------------------------------------
    def shutdown_write(self) -> None:
        """Half-close once the queued bytes are sent (the peer reads EOF)."""
        if self._out:
            self._shut_after_drain = True
        else:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def detach(self) -> socket.socket:
        """Stop all callbacks and hand the socket over (nothing may be queued)."""
        assert not self._out, "detach with bytes queued"
        self.stop_reading()
        self.closed = True
        return self.sock

    def close(self) -> None:
        if self.closed:
            return
        self.stop_reading()
        if self._writing:
            self._writing = False
            self.reactor.remove_writer(self.fd)
        self.closed = True
        self._out.clear()
        self.sock.close()

    def abort(self) -> None:
        """Close with a TCP reset, so the peer sees the failure."""
        if not self.closed:
            reset(self.sock)
        self.close()


def reset(sock: socket.socket) -> None:
    """Arrange for close() to send RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
