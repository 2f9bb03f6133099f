"""scripts/bench-channel: records/s and latency between two processes for our
shared-memory ring, multiprocessing.Queue and faster-fifo.

Throughput: the producer sends as fast as it can, the consumer drains.
Latency: the producer sends one timestamped record, then sleeps 200
microseconds (moderate load, a few thousand records a second), and the
consumer waits the way each channel lets it: the ring spins on its counters
for up to 100 microseconds, then sleeps on its eventfd doorbell; the queues
block in get(). A second ring row polls without sleeping, which shows the
ring's own latency apart from the kernel's wake-up. The clock is
CLOCK_MONOTONIC, shared by both processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import select
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataplane.channel.ring import Ring  # noqa: E402

STAMP = struct.Struct("<q")
DONE = b"done"


class RingChannel:
    name = "ring (shm + eventfd)"
    spin = 100e-6      # seconds of polling before sleeping on the doorbell

    def __init__(self) -> None:
        self.ring = Ring.create(1 << 22)
        self.bell = os.eventfd(0, os.EFD_NONBLOCK)

    def put(self, record: bytes) -> None:
        while not self.ring.put(record):
            pass                      # full: spin (the consumer is draining)
        if self.ring.wake:
            os.eventfd_write(self.bell, 1)

    def get(self) -> bytes:
        ring = self.ring
        spin_until = time.monotonic() + self.spin
        while (record := ring.get()) is None:
            if time.monotonic() < spin_until or not ring.idle():
                continue
            select.select([self.bell], [], [], 0.05)
            ring.busy()
            try:
                os.eventfd_read(self.bell)
            except BlockingIOError:
                pass
        return record

    def close(self) -> None:
        self.ring.close()


class RingPollingChannel(RingChannel):
    """The ring's own latency: a consumer that never sleeps (costs a core)."""
    name = "ring (polling consumer)"
    spin = float("inf")


class QueueChannel:
    name = "multiprocessing.Queue"

    def __init__(self) -> None:
        self.queue = multiprocessing.get_context("fork").Queue()

    def put(self, record: bytes) -> None:
        self.queue.put(record)

    def get(self) -> bytes:
        return self.queue.get()

    def close(self) -> None:
        self.queue.close()


class FasterFifoChannel(QueueChannel):
    name = "faster-fifo"

    def __init__(self) -> None:
        from faster_fifo import Queue
        self.queue = Queue(max_size_bytes=1 << 22)


def _consume_count(channel, count: int, out) -> None:
    for _ in range(count):
        channel.get()
    out.send(time.monotonic_ns())


def throughput(channel, size: int, count: int) -> float:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(
        target=_consume_count, args=(channel, count, child))
    proc.start()
    record = b"x" * size
    started = time.monotonic_ns()
    for _ in range(count):
        channel.put(record)
    finished = parent.recv()
    proc.join()
    return count / ((finished - started) / 1e9)


def _consume_latency(channel, count: int, out) -> None:
    samples = []
    for _ in range(count):
        record = channel.get()
        samples.append(time.monotonic_ns() - STAMP.unpack_from(record)[0])
    out.send(samples)


def latency(channel, size: int, count: int, gap: float) -> dict:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(
        target=_consume_latency, args=(channel, count, child))
    proc.start()
    pad = b"y" * (size - STAMP.size)
    time.sleep(0.2)
    for _ in range(count):
        channel.put(STAMP.pack(time.monotonic_ns()) + pad)
        time.sleep(gap)
    samples = sorted(parent.recv())
    proc.join()
    return {"p50_us": samples[len(samples) // 2] / 1000,
            "p99_us": samples[int(len(samples) * 0.99)] / 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000, help="records per throughput run")
    parser.add_argument("--repeat", type=int, default=3,
                        help="throughput runs per channel; the median is reported")
    parser.add_argument("--latency-count", type=int, default=20_000)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    kinds = [RingChannel, RingPollingChannel, QueueChannel, FasterFifoChannel]
    results = {}
    for size in (64, 1024):
        for kind in kinds:
            rates = []
            for _ in range(args.repeat):
                channel = kind()
                rates.append(throughput(channel, size, args.count))
                channel.close()
            row = {"records_s": statistics.median(rates)}
            channel = kind()
            row |= latency(channel, size, args.latency_count, gap=0.0002)
            channel.close()
            results[f"{kind.name} {size} B"] = row
            print(f"bench-channel: {kind.name} {size} B done", file=sys.stderr)
    print(f"{'channel':<32}{'records/s':>14}{'vs Queue':>10}{'p50 us':>10}{'p99 us':>10}")
    for label, row in results.items():
        base = results[label.replace(label.rsplit(' ', 2)[0], 'multiprocessing.Queue')]
        print(f"{label:<32}{row['records_s']:>14,.0f}{row['records_s'] / base['records_s']:>9.1f}x"
              f"{row['p50_us']:>10.1f}{row['p99_us']:>10.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
