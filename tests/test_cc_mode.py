"""lb_delay's mode switch (bpf/lb_delay_mode.h), the very C the BPF object is
built from, compiled here into a host library and fed RTT rounds: a start-up
overshoot that drains is not competition; a queue that stays however much we
cut is; the drain probe finds the path ours again, or restores the window."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

BPF = Path(__file__).resolve().parent.parent / "bpf"
KEEP, TO_COMPETE, PROBE_CUT, PROBE_FAILED, TO_DELAY = range(5)
DELAY, COMPETE = 0, 1
MS = 1_000_000                      # ns
BASE, TARGET = 20_000, 1_000        # us: a 20 ms path, lb_delay's default target

WRAPPER = """
#include <stdint.h>
#include <string.h>
typedef uint8_t __u8; typedef uint32_t __u32; typedef uint64_t __u64;
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#include "lb_delay_mode.h"
unsigned long mode_size(void) { return sizeof(struct lb_mode); }
void mode_init(struct lb_mode *m) { memset(m, 0, sizeof(*m)); m->last_rtt = ~0U; }
int round_end(struct lb_mode *m, __u32 rtt, __u32 base, __u32 target, __u64 now)
{ return mode_round(m, rtt, base, target, now); }
int on_sample(struct lb_mode *m, __u32 rtt, __u32 base, __u32 target, __u64 now)
{ return mode_sample(m, rtt, base, target, now); }
__u32 probe_cwnd(__u32 cwnd, __u32 base, __u32 rtt) { return mode_probe_cwnd(cwnd, base, rtt); }
int mode_of(struct lb_mode *m) { return m->mode; }
int probe_of(struct lb_mode *m) { return m->probe; }
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    compiler = shutil.which("clang-14") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (scripts/setup installs clang-14)")
    tmp = tmp_path_factory.mktemp("mode")
    (tmp / "wrapper.c").write_text(WRAPPER)
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-I", str(BPF),
                    "-o", str(tmp / "mode.so"), str(tmp / "wrapper.c")], check=True)
    found = ctypes.CDLL(str(tmp / "mode.so"))
    found.probe_cwnd.restype = ctypes.c_uint32
    found.round_end.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                ctypes.c_uint32, ctypes.c_uint64]
    found.on_sample.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                ctypes.c_uint32, ctypes.c_uint64]
    return found


class Connection:
    """One connection's mode state, rounds fed at a given RTT each."""

    def __init__(self, lib) -> None:
        self.lib = lib
        self.state = ctypes.create_string_buffer(lib.mode_size())
        lib.mode_init(self.state)
        self.now = 0

    def rounds(self, *rtts_us: int) -> list[int]:
        verdicts = []
        for rtt in rtts_us:
            self.now += rtt * 1000
            verdicts.append(self.lib.round_end(self.state, rtt, BASE, TARGET, self.now))
        return verdicts

    def sample(self, rtt_us: int) -> int:
        return self.lib.on_sample(self.state, rtt_us, BASE, TARGET, self.now)

    @property
    def mode(self) -> int:
        return self.lib.mode_of(self.state)


def test_a_start_up_overshoot_that_drains_is_not_competition(lib):
    c = Connection(lib)
    # Slow start overshot to 60 ms; lb_delay's cuts drain it a round later.
    verdicts = c.rounds(60_000, 75_000, 55_000, 41_000, 31_000, 26_000, 23_500, 22_000, 21_500)
    assert set(verdicts) == {KEEP} and c.mode == DELAY


def test_one_packet_of_serialisation_is_not_a_queue(lib):
    c = Connection(lib)       # 10 Mbit/s: one 1500-byte packet ahead of ours is 1.2 ms
    assert set(c.rounds(*[BASE + 1_200] * 20)) == {KEEP} and c.mode == DELAY


def test_a_queue_that_stays_whatever_we_cut_switches_to_compete(lib):
    c = Connection(lib)
    verdicts = c.rounds(*[BASE + 30_000 + 500 * i for i in range(6)])   # cubic keeps filling
    assert verdicts == [KEEP] * 5 + [TO_COMPETE] and c.mode == COMPETE


def test_an_improving_round_starts_the_count_again(lib):
    c = Connection(lib)
    assert set(c.rounds(*[50_000] * 5, 40_000, *[40_000] * 5)) == {KEEP}
    assert c.rounds(40_000) == [TO_COMPETE]


def test_on_a_long_path_the_queue_must_exceed_a_sixteenth_of_the_base(lib):
    c = Connection(lib)
    long_base = 80_000                   # jitter of 3 ms on an 80 ms path is no queue
    for _ in range(20):
        c.now += 83_000_000
        assert lib.round_end(c.state, long_base + 3_000, long_base, TARGET, c.now) == KEEP


def compete(lib) -> Connection:
    c = Connection(lib)
    c.rounds(*[60_000] * 6)
    assert c.mode == COMPETE
    return c


def test_the_drain_probe_waits_four_rounds_and_half_a_second(lib):
    c = compete(lib)
    assert c.rounds(*[60_000] * 9) == [KEEP] * 8 + [PROBE_CUT]       # 540 ms, not 480
    slow = compete(lib)
    assert slow.rounds(*[400_000] * 4) == [KEEP] * 3 + [PROBE_CUT]   # 4 rounds, not 0.5 s
    assert lib.probe_cwnd(300, BASE, 60_000) == 100                  # base/rtt of the window
    assert lib.probe_cwnd(3, BASE, 60_000) == 2                      # never below 2


def test_a_low_sample_after_the_drain_means_the_queue_was_ours(lib):
    c = compete(lib)
    assert c.rounds(*[60_000] * 9)[-1] == PROBE_CUT
    assert c.sample(BASE + 500) == KEEP              # still draining: not judged
    assert c.rounds(45_000) == [KEEP]                # the drain round ends
    assert c.sample(BASE + 1_500) == TO_DELAY        # the first sample after it judges
    assert c.mode == DELAY


def test_a_queue_that_stays_through_the_probe_restores_compete_and_probes_later(lib):
    c = compete(lib)
    assert c.rounds(*[60_000] * 9)[-1] == PROBE_CUT
    assert c.rounds(58_000) == [KEEP]
    assert c.sample(BASE + 30_000) == PROBE_FAILED
    assert c.mode == COMPETE and lib.probe_of(c.state) == 0
    assert c.rounds(*[60_000] * 17)[-1] == PROBE_CUT            # 1 s later, not 0.5 s
    assert c.rounds(60_000) == [KEEP] and c.rounds(60_000) == [PROBE_FAILED]   # no sample
    assert c.rounds(*[60_000] * 25) == [KEEP] * 24 + [PROBE_CUT]    # 1.5 s
    c.rounds(60_000)
    assert c.sample(BASE + 30_000) == PROBE_FAILED
    assert c.rounds(*[60_000] * 25) == [KEEP] * 24 + [PROBE_CUT]    # and no longer
