"""A connection on uvloop's C transport, with the interface the HTTP layer uses.

Reads and writes of HTTP heads and small bodies stay in C: uvloop reads into
its own buffer and hands the bytes to ``owner.on_data``; ``write`` tries the
socket at once and queues in C only what the kernel refuses. A peer's RST
arrives as ``on_error`` (libuv's stream handles read the error; only its
poll handles, which we never use for these sockets, lose EPOLLERR).

For splice the transport's reading is paused and its (drained) file descriptor
is used directly; ``detach`` hands a duplicate of it to a byte relay.
Owners apply back-pressure with ``pending`` and ``when_drained``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import struct
from typing import Callable, Protocol, cast

_LINGER_RESET = struct.pack("ii", 1, 0)
SOL_TLS, _TLS_SET_RECORD_TYPE = 282, 1
_ALERT, _CLOSE_NOTIFY = b"\x15", b"\x01\x00"     # record type 21; warning, close_notify


class StreamOwner(Protocol):
    def on_data(self, data: bytes) -> None: ...
    def on_eof(self) -> None: ...
    def on_error(self, exc: OSError) -> None: ...


class Stream(asyncio.Protocol):
    """An asyncio protocol object; ``data_received`` is the owner's own
    ``on_data``, so a read costs one Python call, and ``write(data)`` is the
    transport's (it sends now what the kernel takes and queues the rest;
    errors surface via on_error), or nothing once closed."""

    __slots__ = ("transport", "sock", "fd", "tls", "kernel_tls", "owner", "data_received", "write",
                 "closed", "reading", "queued", "_drain_waiters", "_made", "_shared")

    def __init__(self, owner: StreamOwner | None = None,
                 made: Callable[["Stream"], None] | None = None) -> None:
        # Both are None until connection_made, and nothing else runs before it.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # see above
        self.sock: socket.socket = None  # type: ignore[assignment]  # see above
        self.fd = -1
        self.tls: ssl.SSLObject | None = None     # over TLS: the handshake's outcome
        self.kernel_tls = False   # the kernel encrypts (tls.ktls): its bytes are plaintext here
        self.closed = False
        self.reading = True       # a transport reads from the start
        self.queued = False       # bytes wait in the transport's buffer
        self._drain_waiters: list[Callable[[], None]] = []
        self._made = made
        self._shared: socket.socket | None = None
        self.data_received = None  # type: ignore[assignment,method-assign]  # the owner's on_data, below
        self.write: Callable[[bytes], object] = _nowhere
        if owner is not None:
            self.own(owner)

    def own(self, owner: StreamOwner) -> None:
        self.owner = owner
        self.data_received = owner.on_data  # type: ignore[method-assign]  # one call per read
        if self.transport is not None:
            self.transport.set_protocol(self)   # uvloop caches data_received

    # -- protocol callbacks (uvloop) ---------------------------------------
    def connection_made(self, base: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, base)   # a stream's transport
        self.write = transport.write
        self.sock = transport.get_extra_info("socket")
        self.fd = self.sock.fileno()
        self.tls = transport.get_extra_info("ssl_object")
        transport.set_write_buffer_limits(0)   # pause_writing whenever bytes stay queued
        if self._made is not None:
            made, self._made = self._made, None
            made(self)

    def eof_received(self) -> bool:
        self.reading = False
        self.owner.on_eof()
        return True        # keep the writing side: the owner closes when done

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self._closed()
        if not isinstance(exc, OSError):
            exc = ConnectionResetError(errno.ECONNRESET, "connection lost")
        self.owner.on_error(exc)

    def pause_writing(self) -> None:
        self.queued = True

    def resume_writing(self) -> None:
        self.queued = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            waiter()

    @property
    def plain(self) -> bool:
        """Its bytes are the peer's own, as a splice would move them: not TLS,
        or TLS the kernel does (and not one stream of a multiplexed
        connection, which overrides it)."""
        return self.tls is None or self.kernel_tls

    # -- reading ---------------------------------------------------------
    def start_reading(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.transport.resume_reading()

    def stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            if not self.closed:
                self.transport.pause_reading()

    # -- writing ---------------------------------------------------------
    @property
    def pending(self) -> int:
        """Bytes queued in user space, not yet in the kernel."""
        return self.transport.get_write_buffer_size() if self.queued else 0

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call back once every queued byte is in the kernel (now, if none is queued)."""
        if self.queued and not self.closed:
            self._drain_waiters.append(callback)
        else:
            callback()

    def shared_socket(self) -> socket.socket:
        """A socket object on this connection's descriptor, for kernel tuning
        that keeps sockets as weak keys (uvloop's own cannot be); it lets go of
        the descriptor when the stream closes and never closes it itself."""
        if self._shared is None:
            self._shared = socket.socket(fileno=self.fd)
        return self._shared

    # -- ending ----------------------------------------------------------
    def shutdown_write(self) -> None:
        """Half-close once the queued bytes are sent (the peer reads EOF). TLS
        has no half-close: its transport closes after them (close_notify)."""
        if self.closed:
            return
        if self.kernel_tls:
            self.when_drained(self._notify_and_close)
            return
        if self.tls is not None:
            self.transport.close()
            return
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError):
            pass

    def detach(self) -> socket.socket:
        """Stop all callbacks and hand over a socket on the same connection
        (nothing may be queued)."""
        assert not self.pending, "detach with bytes queued"
        sock = socket.socket(fileno=os.dup(self.fd))
        self._closed()
        self.transport.abort()      # closes uvloop's descriptor only: no FIN, no RST
        return sock

    def hand_over(self) -> asyncio.Transport:
        """Stop all callbacks and give the transport itself to a relay (over
        TLS, where a descriptor would carry ciphertext)."""
        self._closed()
        self.transport.pause_reading()
        return self.transport

    def _notify_and_close(self) -> None:
        if not self.closed:
            self.close()

    def close(self) -> None:
        if not self.closed:
            if self.kernel_tls and not self.queued:
                self._close_notify()
            self._closed()
            self.transport.abort()

    def _close_notify(self) -> None:
        """The TLS alert a kernel TLS connection ends with (not waiting for room)."""
        try:
            self.shared_socket().sendmsg([_CLOSE_NOTIFY], [(SOL_TLS, _TLS_SET_RECORD_TYPE, _ALERT)],
                              socket.MSG_DONTWAIT)
        except OSError:
            pass

    def _closed(self) -> None:
        self.closed = True
        self.write = _nowhere
        self.queued = False
        if self._shared is not None:
            self._shared.detach()

    def abort(self) -> None:
        """Close with a TCP reset, so the peer sees the failure."""
        if not self.closed:
            reset(self.sock)
            self._closed()
            self.transport.abort()


def _nowhere(data: bytes) -> None:
    """Where a closed stream's writes go."""


def reset(sock: socket.socket) -> None:
    """Arrange for close() to send RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
