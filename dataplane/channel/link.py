"""A worker's link to the control process: two rings with doorbells.

Down (control -> worker, policy: wait up to 1 s when full): versioned state
snapshots; a worker applies a newer one between requests (messages are handled
by the event loop, never inside a request's callbacks) and acknowledges it.
Up (worker -> control, policy: drop and count when full): acknowledgements,
outcome batches and periodic counters.

Each direction is one Ring plus an eventfd doorbell, rung by the producer only
when the consumer has said it may be asleep (Ring.idle). Consumers also poll every
``POLL`` seconds, which bounds a wake-up lost to store-load reordering (see
ring.py). Messages are msgpack (msgspec), not pickle.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable

import msgspec

from .messages import Down, Up
from .ring import Ring

POLL = 0.05
STATE_WAIT = 1.0          # seconds the control process waits for room for a snapshot
RING_SIZE = 1 << 20


class Endpoint:
    """One end of one direction: a ring and its doorbell."""

    def __init__(self, ring: Ring, bell: int, kind: Any) -> None:
        self.ring = ring
        self.bell = bell
        self.encode = msgspec.msgpack.Encoder().encode
        self.decode = msgspec.msgpack.Decoder(kind).decode
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- producing -------------------------------------------------------
    def send(self, message: Down | Up, wait: float = 0.0) -> bool:
        """Queue a message; with ``wait`` block up to that long for room, else
        drop it when the ring is full (False)."""
        data = self.encode(message)
        if wait:
            self.ring.put_or_wait(data, wait)
        elif not self.ring.put_or_drop(data):
            return False
        if self.ring.wake:
            os.eventfd_write(self.bell, 1)
        return True

    # -- consuming -------------------------------------------------------
    def listen(self, loop: asyncio.AbstractEventLoop, handler: Callable[[object], None]) -> None:
        self._loop = loop
        self._handler = handler
        loop.add_reader(self.bell, self._wake)
        self._timer = loop.call_later(POLL, self._poll)

    def _wake(self) -> None:
        self.ring.busy()
        try:
            os.eventfd_read(self.bell)
        except BlockingIOError:
            pass
        self.drain()

    def _poll(self) -> None:
        self.drain()
        assert self._loop is not None       # polling begins in listen()
        self._timer = self._loop.call_later(POLL, self._poll)

    def drain(self) -> None:
        """Handle every record, then tell producers to ring before the next."""
        ring, decode, handler = self.ring, self.decode, self._handler
        while True:
            while (record := ring.get()) is not None:
                handler(decode(record))
            if ring.idle():
                return

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.bell)
            if self._timer is not None:
                self._timer.cancel()
            self._loop = None


class Link:
    """Both directions for one worker slot, created by the control process
    before the fork; the worker uses the same objects after it."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        flags = os.EFD_NONBLOCK | os.EFD_CLOEXEC
        self.down = Endpoint(Ring.create(RING_SIZE), os.eventfd(0, flags), Down)
        self.up = Endpoint(Ring.create(RING_SIZE), os.eventfd(0, flags), Up)

    def close(self) -> None:
        for endpoint in (self.down, self.up):
            endpoint.stop()
            os.close(endpoint.bell)
            endpoint.ring.close()

    def forget(self) -> None:
        """In a worker: let go of another slot's link that came with the fork
        (its descriptors and mappings), leaving the control process's loop and
        memory alone. A worker forked later than its siblings would otherwise
        keep their rings, and a dead sibling's, for its whole life."""
        for endpoint in (self.down, self.up):
            os.close(endpoint.bell)
            endpoint.ring.close(unlink=False)
