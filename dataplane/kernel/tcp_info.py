"""Per-socket TCP facts and knobs: TCP_INFO samples, the congestion-control
algorithm (TCP_CONGESTION) and the pacing cap (SO_MAX_PACING_RATE).

Offsets are those of struct tcp_info in linux/tcp.h, which only ever grows at
its end; a shorter answer from an older kernel leaves the later fields at 0.
"""

from __future__ import annotations

import glob
import os
import socket
import struct
from typing import NamedTuple

SO_MAX_PACING_RATE = 47        # not in Python's socket module
NO_PACING_CAP = (1 << 64) - 1   # what the kernel reports when no cap is set
_INFO_SIZE = 200
_AVAILABLE = "/proc/sys/net/ipv4/tcp_available_congestion_control"


class TcpSample(NamedTuple):
    rtt_us: int            # smoothed RTT
    min_rtt_us: int        # the kernel's windowed minimum
    cwnd: int              # segments
    total_retrans: int     # segments retransmitted over the connection's life
    pacing_rate: int       # bytes/s the kernel paces at now
    max_pacing_rate: int   # bytes/s cap set with SO_MAX_PACING_RATE (NO_PACING_CAP: none)
    bytes_acked: int
    rttvar_us: int = 0
    segs_out: int = 0
    delivered_ce: int = 0  # segments delivered with a CE mark (kernels since 4.19)


def sample(sock: socket.socket) -> TcpSample | None:
    """TCP_INFO of a connected socket, or None once it is closed."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _INFO_SIZE)
    except OSError:
        return None
    raw = raw.ljust(_INFO_SIZE, b"\0")
    rtt, = struct.unpack_from("I", raw, 68)
    cwnd, = struct.unpack_from("I", raw, 80)
    retrans, = struct.unpack_from("I", raw, 100)
    pacing, cap, acked = struct.unpack_from("QQQ", raw, 104)
    rttvar, = struct.unpack_from("I", raw, 72)
    segs_out, = struct.unpack_from("I", raw, 136)
    min_rtt, = struct.unpack_from("I", raw, 148)
    delivered_ce, = struct.unpack_from("I", raw, 196)
    return TcpSample(rtt, min_rtt, cwnd, retrans, pacing, cap, acked, rttvar, segs_out,
                     delivered_ce)


def algorithm(sock: socket.socket) -> str | None:
    """The congestion-control algorithm a socket uses."""
    try:
        name = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    except OSError:
        return None
    return name.split(b"\0", 1)[0].decode()


def set_algorithm(sock: socket.socket, name: str) -> None:
    """Raises OSError (ENOENT) when the kernel has no such algorithm."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())


def set_pacing_cap(sock: socket.socket, bytes_per_second: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, struct.pack("Q", bytes_per_second))


def kernel_algorithms() -> list[str]:
    """Algorithms the kernel offers now (ours appear here once registered)."""
    try:
        with open(_AVAILABLE, encoding="ascii") as f:
            return f.read().split()
    except OSError:
        return []


def module_algorithms() -> list[str]:
    """Algorithms built as modules of the running kernel (a distribution
    kernel's bbr, dctcp, vegas...): TCP_CONGESTION loads them for a process
    with CAP_NET_ADMIN; without it, setting one fails and is logged."""
    found = glob.glob(f"/lib/modules/{os.uname().release}/kernel/net/ipv4/tcp_*.ko*")
    names = (os.path.basename(path)[4:].split(".ko")[0] for path in found)
    return sorted(name for name in names if name != "diag")       # tcp_diag is no algorithm
