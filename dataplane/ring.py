"""Lock-free single-producer / single-consumer rings in shared memory.

Layout of one ring (``multiprocessing.shared_memory``)::

    0    magic "L7RING01", capacity (u64)            written once at creation
    64   head (u64): bytes consumed, written by the consumer only
    128  tail (u64): bytes produced, written by the producer only
    192  data: ``capacity`` bytes (a power of two)

A record is a u32 length followed by the payload, padded to 8 bytes. A record
never straddles the end of the data area: when it would not fit, the producer
writes a wrap marker (length 0xFFFFFFFF) and starts again at offset 0. Head and
tail only grow; ``position % capacity`` is the offset, ``tail - head`` the
bytes in use.

Memory ordering. The producer copies the record into the data area and only
then stores the new tail; the consumer loads the tail, then reads records
below it, then stores the new head. This is correct when (1) each counter is
written by one 8-byte store and read by one 8-byte load, and (2) stores become
visible in program order, and loads are not reordered with older loads.
(1): counters are read and written through ``memoryview.cast("Q")``, whose
item access in CPython is a single aligned 8-byte move; the offsets are 64-byte
aligned, so no load or store tears. (2): x86-64 (TSO) keeps stores in order
and loads in order; CPython executes our statements in program order, each
inside its own C call that the compiler cannot reorder around the shared
memory. What TSO does not give is store-then-load order: a side's store may
still sit in its store buffer when its next load reads the other counter. The
data path does not need that order, but the doorbell does (the producer reads
``head`` right after publishing ``tail`` to decide if the consumer may be
asleep), so a wake-up can in theory be missed; consumers therefore also poll
on a timer, which bounds such a miss (see channel.py). On weakly ordered CPUs
(ARM, POWER) condition (2) does not hold without barriers, which Python cannot
issue: this module is for x86-64 only, and says so at creation.

A consumer that restarts attaches by name and resumes at the published head;
a record it had read but whose head it had not yet published is delivered
again (at-least-once across a consumer crash, exactly-once otherwise).
Inconsistent counters raise RingCorrupt instead of returning garbage.
"""

from __future__ import annotations

import os
import platform
import secrets
import struct
import time
from multiprocessing import shared_memory

MAGIC = b"L7RING01"
HEADER = 192
_HEAD, _TAIL = 64 // 8, 128 // 8        # indexes in the u64 view of the header
_LEN = struct.Struct("<I")
WRAP = 0xFFFFFFFF

if platform.machine() not in ("x86_64", "AMD64"):
    raise ImportError("dataplane.ring relies on x86-64 memory ordering (see its docstring)")


class RingFull(Exception):
    """No room for the record (with the policy ``wait``: not within the timeout)."""


class RingCorrupt(Exception):
    """The shared counters or a record length make no sense: refuse to guess."""


def _padded(size: int) -> int:
    return (size + 7) & ~7


class Ring:
    """One end (producer or consumer) of a ring; both ends may map the same memory."""

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool) -> None:
        self.shm = shm
        self.owner = owner
        buf = shm.buf
        if bytes(buf[:8]) != MAGIC:
            raise RingCorrupt(f"{shm.name}: not a ring (bad magic)")
        self.capacity = struct.unpack_from("<Q", buf, 8)[0]
        if self.capacity & (self.capacity - 1) or HEADER + self.capacity > shm.size:
            raise RingCorrupt(f"{shm.name}: bad capacity {self.capacity}")
        self.mask = self.capacity - 1
        self.counters = buf[:HEADER].cast("Q")
        self.data = buf[HEADER:HEADER + self.capacity]
        self.max_record = self.capacity // 2 - 8
        self.dropped = 0       # producer side: records refused by the drop policy
        self.was_empty = False  # producer side: the ring was empty before the last put

    # -- life cycle ------------------------------------------------------
    @classmethod
    def create(cls, capacity: int = 1 << 20, name: str | None = None) -> "Ring":
        if capacity < 64 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two, at least 64")
        name = name or f"l7lb-{os.getpid()}-{secrets.token_hex(4)}"
        shm = shared_memory.SharedMemory(name=name, create=True, size=HEADER + capacity)
        shm.buf[:HEADER] = bytes(HEADER)
        struct.pack_into("<8sQ", shm.buf, 0, MAGIC, capacity)
        return cls(shm, owner=True)

    @classmethod
    def attach(cls, name: str) -> "Ring":
        """Open an existing ring (the other process's end, or a restarted consumer)."""
        # Python 3.11 registers attached segments with the resource tracker too;
        # forked processes share the creator's tracker, where it is one entry.
        shm = shared_memory.SharedMemory(name=name)
        try:
            ring = cls(shm, owner=False)
        except RingCorrupt:
            shm.close()
            raise
        try:
            ring._check(ring.counters[_HEAD], ring.counters[_TAIL])
        except RingCorrupt:
            ring.close()
            raise
        return ring

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        self.counters.release()
        self.data.release()
        self.shm.close()
        if self.owner:
            self.shm.unlink()

    # -- producer --------------------------------------------------------
    def put(self, record: bytes) -> bool:
        """Append a record; False (nothing written) when it does not fit now.

        Returns whether the ring was empty before, in ``self.was_empty``, so the
        caller knows to ring the doorbell.
        """
        size = len(record)
        if size > self.max_record:
            raise ValueError(f"record of {size} bytes exceeds {self.max_record}")
        need = _padded(4 + size)
        counters = self.counters
        tail = counters[_TAIL]
        head = counters[_HEAD]
        offset = tail & self.mask
        skip = self.capacity - offset if need > self.capacity - offset else 0
        if tail + skip + need - head > self.capacity:
            return False
        data = self.data
        if skip:
            _LEN.pack_into(data, offset, WRAP)
            offset = 0
        _LEN.pack_into(data, offset, size)
        data[offset + 4:offset + 4 + size] = record
        counters[_TAIL] = tail + skip + need      # publish: the record is complete
        self.was_empty = counters[_HEAD] == tail
        return True

    def put_or_drop(self, record: bytes) -> bool:
        """Policy for observations: a full ring loses the record and counts it."""
        if self.put(record):
            return True
        self.dropped += 1
        return False

    def put_or_wait(self, record: bytes, timeout: float) -> None:
        """Policy for state: wait for room, up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        pause = 0.0001
        while not self.put(record):
            if time.monotonic() >= deadline:
                raise RingFull(f"{self.name}: no room for {len(record)} bytes in {timeout}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    # -- consumer --------------------------------------------------------
    def get(self) -> bytes | None:
        """The oldest record, or None when the ring is empty."""
        counters = self.counters
        head = counters[_HEAD]
        tail = counters[_TAIL]
        if head == tail:
            return None
        self._check(head, tail)
        data = self.data
        offset = head & self.mask
        (size,) = _LEN.unpack_from(data, offset)
        if size == WRAP:
            head += self.capacity - offset
            offset = 0
            (size,) = _LEN.unpack_from(data, offset)
        if size > self.max_record or head + _padded(4 + size) > tail:
            raise RingCorrupt(f"{self.name}: record length {size} at {head} past tail {tail}")
        record = bytes(data[offset + 4:offset + 4 + size])
        counters[_HEAD] = head + _padded(4 + size)   # publish: the slot is free
        return record

    def _check(self, head: int, tail: int) -> None:
        if head > tail or tail - head > self.capacity or head & 7 or tail & 7:
            raise RingCorrupt(f"{self.name}: inconsistent counters head={head} tail={tail}")

    def __len__(self) -> int:
        """Bytes in use (records, padding and wrap skips)."""
        return self.counters[_TAIL] - self.counters[_HEAD]
