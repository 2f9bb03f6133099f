"""Lock-free single-producer / single-consumer rings in shared memory.

Layout of one ring (``multiprocessing.shared_memory``)::

    0    magic "L7RING01", capacity (u64)            written once at creation
    64   head (u64): bytes consumed, written by the consumer only
    128  tail (u64): bytes produced, written by the producer only
    192  idle (u64): 1 while the consumer may be asleep, written by the consumer only
    256  data: ``capacity`` bytes (a power of two)

A record is a u32 length followed by the payload, padded to 8 bytes. A record
never straddles the end of the data area: when it would not fit, the producer
writes a wrap marker (length 0xFFFFFFFF) and starts again at offset 0. Head and
tail only grow; ``position % capacity`` is the offset, ``tail - head`` the
bytes in use. Each side keeps its own counter locally and a cached copy of
the other side's, which it reads from shared memory only when the cache says
full (producer) or empty (consumer): the counters' cache lines then cross
between cores about once per batch instead of once per record.

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
data path does not need that order, but the doorbell does: the consumer sets
``idle`` and then re-reads ``tail`` before it sleeps, the producer publishes
``tail`` and then reads ``idle`` to decide whether to ring, and with both loads
passing both stores a wake-up is missed. Consumers therefore also poll on a
timer, which bounds such a miss (see channel.py). On weakly ordered CPUs
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
HEADER = 256
_HEAD, _TAIL, _IDLE = 64 // 8, 128 // 8, 192 // 8   # indexes in the u64 view of the header
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
        assert buf is not None          # None only once the segment is closed
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
        self.wake = False      # producer side: the consumer may be asleep, ring the bell
        # Each side's own counter, and its cache of the other side's.
        self._tail = self._tail_seen = self.counters[_TAIL]
        self._head = self._head_seen = self.counters[_HEAD]

    # -- life cycle ------------------------------------------------------
    @classmethod
    def create(cls, capacity: int = 1 << 20, name: str | None = None) -> "Ring":
        if capacity < 64 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two, at least 64")
        name = name or f"l7lb-{os.getpid()}-{secrets.token_hex(4)}"
        shm = shared_memory.SharedMemory(name=name, create=True, size=HEADER + capacity)
        buf = shm.buf
        assert buf is not None          # None only once the segment is closed
        buf[:HEADER] = bytes(HEADER)
        struct.pack_into("<8sQ", buf, 0, MAGIC, capacity)
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

    def close(self, unlink: bool = True) -> None:
        """Unmap; the owner also removes the segment (not a forked copy of it)."""
        self.counters.release()
        self.data.release()
        self.shm.close()
        if self.owner and unlink:
            self.shm.unlink()

    # -- producer --------------------------------------------------------
    def put(self, record: bytes) -> bool:
        """Append a record; False (nothing written) when it does not fit now.

        Sets ``self.wake`` when the consumer said it may be asleep, so the caller
        knows to ring the doorbell.
        """
        size = len(record)
        if size > self.max_record:
            raise ValueError(f"record of {size} bytes exceeds {self.max_record}")
        need = _padded(4 + size)
        capacity = self.capacity
        tail = self._tail
        offset = tail & self.mask
        skip = capacity - offset if need > capacity - offset else 0
        end = tail + skip + need
        if end - self._head_seen > capacity:
            self._head_seen = self.counters[_HEAD]
            if end - self._head_seen > capacity:
                return False
        data = self.data
        if skip:
            _LEN.pack_into(data, offset, WRAP)
            offset = 0
        _LEN.pack_into(data, offset, size)
        data[offset + 4:offset + 4 + size] = record
        counters = self.counters
        counters[_TAIL] = self._tail = end      # publish: the record is complete
        self.wake = counters[_IDLE] != 0
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
        head = self._head
        tail = self._tail_seen
        if head == tail:
            tail = self._tail_seen = self.counters[_TAIL]
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
        self.counters[_HEAD] = self._head = head + _padded(4 + size)   # publish: slot free
        return record

    def idle(self) -> bool:
        """The consumer is about to sleep: True if it may (the ring is still
        empty after the flag is up), False if records arrived meanwhile."""
        self.counters[_IDLE] = 1
        if self.counters[_TAIL] == self._head:
            return True
        self.counters[_IDLE] = 0
        return False

    def busy(self) -> None:
        """The consumer is awake: producers need not ring."""
        self.counters[_IDLE] = 0

    def _check(self, head: int, tail: int) -> None:
        if head > tail or tail - head > self.capacity or head & 7 or tail & 7:
            raise RingCorrupt(f"{self.name}: inconsistent counters head={head} tail={tail}")

    def __len__(self) -> int:
        """Bytes in use (records, padding and wrap skips), as shared memory says."""
        return self.counters[_TAIL] - self.counters[_HEAD]
