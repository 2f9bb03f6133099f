"""relay: auto in TCP mode: each direction keeps the engine that moved its
bytes faster, and bytes stay in order when a pump switches engines."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

from dataplane.io.reactor import Reactor
from dataplane.io.relay import SplicePump
from dataplane.io.relay_choice import (COPY, MARGIN, MIN_RATE, RETRY, SPLICE, TRIAL, WARM_BYTES,
                                      WINDOW, RelayChoice)

MB = 1 << 20


def run_trial(splice_rate: float, copy_rate: float, start: float = 0.0,
              moved: int = WARM_BYTES) -> RelayChoice:
    """Drive a choice through one whole trial at the given rates (bytes/s)."""
    return drive(RelayChoice(), splice_rate, copy_rate, start, moved)


def drive(choice: RelayChoice, splice_rate: float, copy_rate: float, now: float,
          moved: int) -> RelayChoice:
    rates = {SPLICE: splice_rate, COPY: copy_rate}
    assert choice.engine_for(now, moved) == SPLICE          # the first window begins
    for expected in TRIAL:
        assert choice.engine == expected
        now, moved = now + WINDOW, moved + int(rates[expected] * WINDOW)
        choice.engine_for(now, moved)
    return choice


def test_short_streams_never_leave_splice():
    choice = RelayChoice()
    for step in range(100):
        assert choice.engine_for(step * 1.0, WARM_BYTES - 1) == SPLICE
    assert choice.trials == 0


def test_copy_is_kept_only_when_clearly_faster():
    assert run_trial(100 * MB, 150 * MB).engine == COPY
    assert run_trial(100 * MB, 100 * MB * MARGIN * 0.99).engine == SPLICE   # within the margin
    assert run_trial(150 * MB, 100 * MB).engine == SPLICE
    assert run_trial(100 * MB, 150 * MB).trials == 1


def test_a_machine_speeding_up_during_the_trial_does_not_decide_it():
    """Windows in ABBA order: both engines are equal and the machine gains a
    third in speed each window. In S-C-S-C order copy's windows would come
    later and win."""
    choice = RelayChoice()
    now, moved = 0.0, WARM_BYTES
    choice.engine_for(now, moved)
    speed = 100 * MB
    for _ in TRIAL:
        now, moved, speed = now + WINDOW, moved + int(speed * WINDOW), speed * 1.33
        choice.engine_for(now, moved)
    assert choice.trials == 1 and choice.engine == SPLICE


def test_a_slow_direction_is_not_tried():
    choice = RelayChoice()
    choice.engine_for(0.0, WARM_BYTES)
    assert choice.engine_for(WINDOW, WARM_BYTES + int(MIN_RATE * WINDOW * 0.5)) == SPLICE
    assert choice.engine_for(WINDOW * 2, WARM_BYTES + int(MIN_RATE * WINDOW)) == SPLICE
    assert choice.trials == 0


def test_the_trial_is_run_again_after_retry_seconds():
    choice = run_trial(100 * MB, 200 * MB)
    decided_at, moved = len(TRIAL) * WINDOW, WARM_BYTES + 500 * MB
    assert choice.engine_for(decided_at + RETRY - 0.01, moved) == COPY    # settled
    drive(choice, 200 * MB, 100 * MB, decided_at + RETRY, moved)          # measured again
    assert choice.engine == SPLICE and choice.trials == 2


class Flip(RelayChoice):
    """A choice that alternates engines at every wake-up, to test the pump's switch."""

    def engine_for(self, now: float, moved: int) -> str:
        self.trials += 1
        self.engine = COPY if self.engine == SPLICE else SPLICE
        return self.engine


def test_a_pump_switching_engines_at_every_wake_up_keeps_every_byte_in_order():
    loop = asyncio.new_event_loop()
    src_app, src = socket.socketpair()
    dst, dst_app = socket.socketpair()
    for s in (src, dst, src_app, dst_app):
        s.setblocking(False)
    payload = os.urandom(24 * MB)
    ended: list = []
    choice = Flip()
    pump = SplicePump(Reactor(loop), src.fileno(), dst.fileno(), None, ended.append, choice)
    received = bytearray()

    async def feed() -> None:
        await loop.sock_sendall(src_app, payload)
        src_app.shutdown(socket.SHUT_WR)

    async def drain() -> None:
        while chunk := await loop.sock_recv(dst_app, MB):
            received.extend(chunk)

    async def main() -> None:
        pump.start()
        reader = loop.create_task(drain())
        await asyncio.wait_for(feed(), 20)
        for _ in range(2000):
            if ended:
                break
            await asyncio.sleep(0.01)
        dst.shutdown(socket.SHUT_WR)          # the relay's half-close, done here by hand
        await asyncio.wait_for(reader, 20)

    loop.run_until_complete(main())
    assert ended == [None] and pump.moved == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert choice.trials > 4                  # it did switch, many times
    for s in (src, dst, src_app, dst_app):
        s.close()
    loop.close()
