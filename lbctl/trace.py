"""``lbctl trace``: live TCP events of the balancer's backend connections, from
the kernel's tracepoints through bcc (Debian's python3-bpfcc).

tcp:tcp_probe (on each ACK) gives cwnd, ssthresh, srtt and the send window; it
is sampled in the kernel to one event per connection per ``interval``.
tcp:tcp_retransmit_skb gives every retransmission. Only connections to the
balancer's backends (IPv4 address and port, from the admin socket) are kept,
in the kernel, so a busy machine's other traffic costs a map lookup per event.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

DEBIAN_BCC = "/usr/lib/python3/dist-packages"
TRACEFS = "/sys/kernel/tracing"
TCP_STATES = ["?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
              "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"]

PROGRAM = r"""
#include <linux/socket.h>

struct backend_key { u32 addr; u16 port; u16 pad; };
struct event { u64 ns; u32 backend; u32 kind; u32 cwnd; u32 ssthresh; u32 srtt_us;
               u32 snd_wnd; u32 state; u16 sport; u16 pad; };

BPF_HASH(backends, struct backend_key, u32, 4096);
BPF_TABLE("lru_hash", u64, u64, last_probe, 65536);
BPF_PERF_OUTPUT(events);

static int backend_of(const u8 *addr, u16 port, u32 *index)
{
    struct backend_key key = {};
    __builtin_memcpy(&key.addr, addr, 4);
    key.port = port;
    u32 *found = backends.lookup(&key);
    if (!found)
        return 0;
    *index = *found;
    return 1;
}

TRACEPOINT_PROBE(tcp, tcp_probe)
{
    u32 index;
    if (args->family != AF_INET || !backend_of(&args->daddr[4], args->dport, &index))
        return 0;
    u64 now = bpf_ktime_get_ns(), sk = args->sock_cookie;   // skaddr is newer than 6.1
    u64 *last = last_probe.lookup(&sk);
    if (last && now - *last < INTERVAL_NS)
        return 0;
    last_probe.update(&sk, &now);
    struct event e = {.ns = now, .backend = index, .kind = 0, .cwnd = args->snd_cwnd,
                      .ssthresh = args->ssthresh, .srtt_us = args->srtt,
                      .snd_wnd = args->snd_wnd, .sport = args->sport};
    events.perf_submit(args, &e, sizeof(e));
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    u32 index;
    if (args->family != AF_INET || !backend_of(args->daddr, args->dport, &index))
        return 0;
    struct event e = {.ns = bpf_ktime_get_ns(), .backend = index, .kind = 1,
                      .state = args->state, .sport = args->sport};
    events.perf_submit(args, &e, sizeof(e));
    return 0;
}
"""


class TraceUnavailable(Exception):
    """bcc cannot run here; the message says why and how to fix it."""


class BackendKey(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint32), ("port", ctypes.c_uint16), ("pad", ctypes.c_uint16)]


class Event(ctypes.Structure):
    _fields_ = [("ns", ctypes.c_uint64), ("backend", ctypes.c_uint32), ("kind", ctypes.c_uint32),
                ("cwnd", ctypes.c_uint32), ("ssthresh", ctypes.c_uint32),
                ("srtt_us", ctypes.c_uint32), ("snd_wnd", ctypes.c_uint32),
                ("state", ctypes.c_uint32), ("sport", ctypes.c_uint16), ("pad", ctypes.c_uint16)]


def _bcc() -> Any:
    """The bcc module: Debian installs it for the system Python only."""
    try:
        import bcc  # type: ignore[import-not-found]  # no stubs; Debian's python3-bpfcc
    except ImportError:
        if DEBIAN_BCC not in sys.path and os.path.isdir(f"{DEBIAN_BCC}/bcc"):
            sys.path.append(DEBIAN_BCC)
        try:
            import bcc
        except ImportError:
            raise TraceUnavailable("bcc is not installed: apt install python3-bpfcc "
                                   "(scripts/setup does)") from None
    return bcc


def _check_machine() -> None:
    release = os.uname().release
    if not Path(f"/lib/modules/{release}/build/include").exists():
        raise TraceUnavailable(
            f"bcc needs kernel headers at /lib/modules/{release}/build; none are packaged "
            f"for this kernel: run scripts/setup, which links Debian's linux-headers-amd64 "
            f"there (enough for tracepoints)")
    if not Path(f"{TRACEFS}/events/tcp").exists():
        os.system(f"mount -t tracefs nodev {TRACEFS} 2>/dev/null")
        if not Path(f"{TRACEFS}/events/tcp").exists():
            raise TraceUnavailable(f"tracefs is not mounted at {TRACEFS} and cannot be")


def unavailable() -> str | None:
    """Why lbctl trace cannot run here, or None."""
    try:
        _bcc()
        _check_machine()
    except TraceUnavailable as exc:
        return str(exc)
    return None


def ipv4_targets(names: list[str]) -> list[tuple[str, str, int]]:
    """(backend name, IPv4 address, port) for each backend that has one."""
    out: list[tuple[str, str, int]] = []
    for name in names:
        host, _, port = name.rpartition(":")
        try:
            infos = socket.getaddrinfo(host.strip("[]"), int(port), socket.AF_INET,
                                       socket.SOCK_STREAM)
        except (OSError, ValueError):
            continue
        for address in sorted({str(info[4][0]) for info in infos}):
            out.append((name, address, int(port)))
    return out


def trace(names: list[str], emit: Callable[[dict[str, Any]], None], seconds: float, count: int,
          interval_ms: float, ready: Callable[[int], None]) -> int:
    """Stream events to ``emit`` until ``count`` were seen or ``seconds`` passed
    (``ready`` is told how many addresses are traced once the probes are
    attached); return how many events were seen."""
    bcc = _bcc()
    _check_machine()
    targets = ipv4_targets(names)
    if not targets:
        raise TraceUnavailable("no backend has an IPv4 address to trace")
    try:
        program = bcc.BPF(text=PROGRAM, cflags=[f"-DINTERVAL_NS={int(interval_ms * 1e6)}ULL"])
    except Exception as exc:      # bcc raises plain Exception on a failed compile
        raise TraceUnavailable(f"bcc could not build the tracing program: {exc}") from None
    table = program["backends"]
    for index, (_, address, port) in enumerate(targets):
        key = BackendKey(int.from_bytes(socket.inet_aton(address), "little"), port, 0)
        table[key] = ctypes.c_uint32(index)
    start_ns = time.monotonic_ns()
    seen = 0

    def handle(_cpu: int, data: int, _size: int) -> None:
        nonlocal seen
        e = ctypes.cast(data, ctypes.POINTER(Event)).contents
        seen += 1
        event = {"t": round((e.ns - start_ns) / 1e9, 6), "backend": targets[e.backend][0],
                 "local_port": e.sport}
        if e.kind == 0:
            event.update(event="probe", cwnd=e.cwnd, ssthresh=e.ssthresh,
                         srtt_us=e.srtt_us, snd_wnd=e.snd_wnd)
        else:
            state = TCP_STATES[e.state] if e.state < len(TCP_STATES) else str(e.state)
            event.update(event="retransmit", state=state)
        emit(event)

    program["events"].open_perf_buffer(handle, page_cnt=64)
    ready(len(targets))
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and (not count or seen < count):
            program.perf_buffer_poll(timeout=100)
    finally:
        program.cleanup()
    return seen
