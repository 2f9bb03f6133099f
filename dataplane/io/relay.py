"""Byte relays between two connected sockets: in the kernel with splice(2), or
in user space over uvloop transports.

Both engines propagate a half-close (EOF one way becomes shutdown(SHUT_WR) on
the other socket) and a reset (a peer's RST becomes an RST to the other peer).
``SplicePump`` also moves an exact byte count one way, which the HTTP proxy
uses for large bodies of known length.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import time
from typing import Callable, cast

from .reactor import Reactor
from .relay_choice import COPY, RelayChoice
from .stream import reset

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1024 * 1024
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_ROUNDS = 16   # splice calls per wake-up before yielding to other connections
COPY_BUFFER = 256 * 1024   # bytes per read when relay: auto chose copy

Done = Callable[[OSError | None], None]


class SplicePump:
    """Moves bytes from one socket to another through a pipe, one direction.

    ``count`` None means until EOF; otherwise exactly that many bytes, and an
    EOF before them is an error. ``on_done(error)`` is called once.
    """

    __slots__ = ("reactor", "src", "dst", "remaining", "on_done", "moved", "held",
                 "pipe_r", "pipe_w", "_reading", "_writing", "done", "choice", "buffer",
                 "held_at")

    def __init__(self, reactor: Reactor, src: int, dst: int,
                 count: int | None, on_done: Done, choice: RelayChoice | None = None) -> None:
        self.reactor, self.src, self.dst = reactor, src, dst
        self.remaining = count
        self.on_done = on_done
        self.moved = 0
        self.held = 0          # bytes read and not yet written (in the pipe or buffer)
        self.choice = choice      # relay: auto, which may switch this pump to copy
        self.buffer: memoryview | None = None    # copy's bytes while the choice is copy
        self.held_at = 0
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.pipe_w, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass   # keep the default size (pipe-max-size or a user quota)
        self._reading = self._writing = False
        self.done = False

    def start(self) -> None:
        """Begin moving (it is often called back once a stream has drained: by
        then the pump may have been stopped, and its pipe's descriptor numbers
        may belong to a new connection)."""
        if not self.done:
            self._pump()

    @property
    def blocked_on_output(self) -> bool:
        """Waiting for the destination to take more (it is not reading)."""
        return self._writing

    def _pump(self) -> None:
        choose = self.choice is not None
        for _ in range(_ROUNDS):
            if self.held:
                try:
                    n = self._write_held()
                except BlockingIOError:
                    return self._wait(writing=True)
                except OSError as exc:
                    return self._finish(exc)
                self.held -= n
                self.moved += n
                continue
            if self.remaining == 0:
                return self._finish(None)
            if choose:            # once per wake-up, with nothing held
                choose = False
                self._choose()
            want = PIPE_SIZE if self.remaining is None else min(PIPE_SIZE, self.remaining)
            try:
                n = self._read(want)
            except BlockingIOError:
                return self._wait(writing=False)
            except OSError as exc:
                return self._finish(exc)
            if n == 0:
                early = self.remaining is not None
                return self._finish(ConnectionAbortedError("EOF before end of body") if early else None)
            self.held += n
            if self.remaining is not None:
                self.remaining -= n
        if not self.held and self.remaining == 0:
            return self._finish(None)     # the last round wrote the last byte
        # Still busy: come back when the socket is ready, after others.
        self._wait(writing=bool(self.held))

    def _read(self, want: int) -> int:
        buffer = self.buffer
        if buffer is None:
            return os.splice(self.src, self.pipe_w, want, flags=_FLAGS)
        self.held_at = 0
        return os.readv(self.src, (buffer[:want],))

    def _write_held(self) -> int:
        buffer = self.buffer
        if buffer is None:
            return os.splice(self.pipe_r, self.dst, self.held, flags=_FLAGS)
        n = os.write(self.dst, buffer[self.held_at:self.held_at + self.held])
        self.held_at += n
        return n

    def _choose(self) -> None:
        assert self.choice is not None
        copying = self.choice.engine_for(time.monotonic(), self.moved) == COPY
        if copying != (self.buffer is not None):
            self.buffer = memoryview(bytearray(COPY_BUFFER)) if copying else None

    def _wait(self, writing: bool) -> None:
        if writing and not self._writing:
            self.reactor.add_writer(self.dst, self._pump)
            self._writing = True
        if not writing and not self._reading:
            self.reactor.add_reader(self.src, self._pump)
            self._reading = True
        if writing and self._reading:
            self.reactor.remove_reader(self.src)
            self._reading = False
        if not writing and self._writing:
            self.reactor.remove_writer(self.dst)
            self._writing = False

    def stop(self) -> None:
        if self._reading:
            self.reactor.remove_reader(self.src)
        if self._writing:
            self.reactor.remove_writer(self.dst)
        self._reading = self._writing = False
        if not self.done:
            self.done = True
            os.close(self.pipe_r)
            os.close(self.pipe_w)

    def _finish(self, error: OSError | None) -> None:
        self.stop()
        self.on_done(error)


class Relay:
    """Two sockets joined both ways until both directions end or one fails."""

    def __init__(self, reactor: Reactor, a: socket.socket, b: socket.socket,
                 on_closed: Callable[["Relay"], None]) -> None:
        self.reactor, self.loop, self.a, self.b = reactor, reactor.loop, a, b
        self.on_closed = on_closed
        self.closed = False
        self.open_directions = 2
        self.idle_timeout = 0.0   # set by the owner; 0 disables
        self.last_io = 0.0
        self.seen = 0

    def check(self, now: float) -> None:
        """Timer sweep: reset both peers when nothing moved for idle_timeout."""
        moved = self.moved
        if moved != self.seen or not self.last_io:
            self.seen, self.last_io = moved, now
        elif self.idle_timeout and now - self.last_io >= self.idle_timeout:
            self.abort()

    def shutdown(self) -> None:
        """The worker is stopping: a stream has no request boundary, so let it run
        until the grace period ends."""

    @property
    def moved(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Reset both peers (idle timeout, forced shutdown)."""
        reset(self.a)
        reset(self.b)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._release()
            self.a.close()
            self.b.close()
            self.on_closed(self)

    def _release(self) -> None:
        """Stop engine callbacks before the sockets close."""

    def choices(self) -> dict[str, str | int]:
        """What relay: auto chose, for the access line (nothing for a fixed engine)."""
        return {}


class SpliceRelay(Relay):
    """``choose``: relay: auto, each direction measures splice against copy."""

    def __init__(self, reactor: Reactor, a: socket.socket, b: socket.socket,
                 on_closed: Callable[[Relay], None], choose: bool = False) -> None:
        super().__init__(reactor, a, b, on_closed)
        self.choose = choose

    def start(self) -> None:
        fa, fb = self.a.fileno(), self.b.fileno()
        reactor = self.reactor
        up, down = (RelayChoice(), RelayChoice()) if self.choose else (None, None)
        self.pumps = (SplicePump(reactor, fa, fb, None, lambda e: self._ended(e, self.a, self.b), up),
                      SplicePump(reactor, fb, fa, None, lambda e: self._ended(e, self.b, self.a), down))
        for pump in self.pumps:
            pump.start()

    def choices(self) -> dict[str, str | int]:
        """For the access line: the engine each direction ended on, and the
        trials that led there (a trial runs once a direction is bulk)."""
        up, down = (pump.choice for pump in self.pumps)
        if up is None or down is None:
            return {}
        return {"relay_up": up.engine, "relay_down": down.engine,
                "relay_trials": up.trials + down.trials}

    @property
    def moved(self) -> int:
        return sum(p.moved for p in self.pumps)

    def _ended(self, error: OSError | None, src: socket.socket, dst: socket.socket) -> None:
        if self.closed:
            return
        if error is not None:
            # A reset or failure on one side is passed on as a reset to the other.
            self.abort()
            return
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.open_directions -= 1
        if self.open_directions == 0:
            self.close()

    def _release(self) -> None:
        for pump in self.pumps:
            pump.stop()


class _CopySide(asyncio.Protocol):
    """One socket of a CopyRelay: what it reads is written to the other side.

    uvloop may deliver data before the other side's transport exists; that
    (at most a read or two) is held until it does."""

    def __init__(self, relay: "CopyRelay") -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer: _CopySide = self     # the other side, once CopyRelay pairs them
        self.moved = 0
        self.early: list[bytes] = []
        self.early_eof = False

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, base)   # a stream's transport
        peer = self.peer
        for data in peer.early:
            transport.write(data)
        peer.early.clear()
        if peer.early_eof:
            transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.moved += len(data)
        target = self.peer.transport
        if target is None:
            self.early.append(data)
        else:
            target.write(data)

    def eof_received(self) -> bool:
        target = self.peer.transport
        if target is None:
            self.early_eof = True
        elif target.can_write_eof():
            target.write_eof()   # sent after the queued bytes
        else:                    # TLS has no half-close: the stream ends both ways
            self.relay.close()
            return True
        self.relay.direction_done()
        return True

    # Only the peer's reads fill this side's buffer, so the peer has its transport.
    def pause_writing(self) -> None:
        if self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.side_lost(self, exc)


def _made_by(side: _CopySide) -> Callable[[], _CopySide]:
    return lambda: side


class CopyRelay(Relay):
    """``adopted``: a side that is a transport already (TLS after a 101, whose
    bytes must go through its TLS layer), taken over as it is."""

    def __init__(self, reactor: Reactor, a: socket.socket, b: socket.socket,
                 on_closed: Callable[[Relay], None], buffer: int = 256 * 1024,
                 adopted: tuple[asyncio.Transport | None, asyncio.Transport | None] = (None, None)
                 ) -> None:
        super().__init__(reactor, a, b, on_closed)
        self.adopted = adopted
        self.buffer = buffer
        self.sides = (_CopySide(self), _CopySide(self))
        self.sides[0].peer, self.sides[1].peer = self.sides[1], self.sides[0]

    @property
    def moved(self) -> int:
        return self.sides[0].moved + self.sides[1].moved

    def start(self) -> None:
        self.loop.create_task(self._wrap())

    async def _wrap(self) -> None:
        try:
            for side, sock, transport in zip(self.sides, (self.a, self.b), self.adopted):
                if transport is not None:
                    side.connection_made(transport)
                    transport.set_protocol(side)
                    transport.resume_reading()
                else:
                    await self.loop.connect_accepted_socket(_made_by(side), sock)
                if side.transport is not None:
                    side.transport.set_write_buffer_limits(high=self.buffer)
        except OSError:
            self.abort()

    def direction_done(self) -> None:
        self.open_directions -= 1
        if self.open_directions == 0:
            self.close()

    def side_lost(self, side: _CopySide, exc: Exception | None) -> None:
        if self.closed:
            return
        if exc is not None and side.peer.transport is not None:
            reset(side.peer.transport.get_extra_info("socket"))
        self.close()

    def _release(self) -> None:
        for side in self.sides:
            if side.transport is not None:
                side.transport.close()

    def close(self) -> None:
        # The transports own the sockets now: closing them closes the sockets.
        if not self.closed:
            self.closed = True
            self._release()
            if self.sides[0].transport is None:
                self.a.close()
            if self.sides[1].transport is None:
                self.b.close()
            self.on_closed(self)
