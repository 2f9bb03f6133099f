"""SplicePump's ends: a count that finishes on the last round of a wake-up,
and a start called back after the pump was stopped."""

from __future__ import annotations

import asyncio
import fcntl
import os

from dataplane.io import relay
from dataplane.io.reactor import Reactor
from dataplane.io.relay import _ROUNDS, F_SETPIPE_SZ, SplicePump


def pipe_pair() -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK)
    fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
    return r, w


def test_a_body_whose_last_byte_goes_out_on_the_last_round_ends_at_once(monkeypatch):
    """With 4 KiB at a time, rounds alternate a read and a write of 4 KiB, so
    this count writes its last byte on round _ROUNDS. The pump used to wait
    for more input then, which a keep-alive backend never sends: the response
    hung until timeouts.backend_idle (found by scripts/soak)."""
    monkeypatch.setattr(relay, "PIPE_SIZE", 4096)
    loop = asyncio.new_event_loop()
    src_r, src_w = pipe_pair()
    dst_r, dst_w = pipe_pair()
    count = (_ROUNDS // 2) * 4096
    os.write(src_w, os.urandom(count))
    ended: list = []
    pump = SplicePump(Reactor(loop), src_r, dst_w, count, ended.append)
    pump.start()
    assert ended == [None] and pump.moved == count
    assert len(os.read(dst_r, count + 1)) == count
    for fd in (src_r, src_w, dst_r, dst_w):
        os.close(fd)
    loop.close()


def test_a_pump_stopped_before_its_start_touches_nothing():
    loop = asyncio.new_event_loop()
    src_r, src_w = pipe_pair()
    dst_r, dst_w = pipe_pair()
    os.write(src_w, b"x" * 100)
    ended: list = []
    pump = SplicePump(Reactor(loop), src_r, dst_w, 100, ended.append)
    pump.stop()            # the exchange ended while the client stream drained
    pump.start()           # then the drain callback came
    assert ended == [] and pump.moved == 0
    assert os.read(src_r, 200) == b"x" * 100
    for fd in (src_r, src_w, dst_r, dst_w):
        os.close(fd)
    loop.close()
