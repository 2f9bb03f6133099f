"""relay: sockmap — bpf/lb_relay.bpf.c loaded in a worker: its stream verdict
program attached to the lb_socks sockhash, so that every byte a joined socket
receives goes straight to its peer's send side inside the kernel.

A worker loads its own copy; the program and maps live as long as the
worker's file descriptors (nothing is pinned, nothing outlives the process).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from pathlib import Path

from .libbpf import BpfError, Libbpf

OBJECT = Path(__file__).resolve().parents[2] / "bpf" / "build" / "lb_relay.bpf.o"
SK_SKB_STREAM_VERDICT = 5      # enum bpf_attach_type
SO_COOKIE = 57                 # not in Python's socket module
SIOCINQ = 0x541B               # bytes in the receive queue (FIONREAD)
_INFO_SIZE = 216               # struct tcp_info up to bytes_retrans


def _cookie(sock: socket.socket) -> int:
    cookie: int = struct.unpack("Q", sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
    return cookie


class Sockmap:
    """The loaded program; ``join`` and ``part`` pairs of connected sockets."""

    def __init__(self, path: Path = OBJECT) -> None:
        if not path.exists():
            raise BpfError(f"{path.name} not built in {path.parent}: run scripts/build-bpf")
        self.lib = lib = Libbpf()
        self.obj = lib.bpf_object__open_file(str(path).encode(), None)
        if not self.obj:
            raise lib.failed(f"cannot open {path}")
        try:
            if lib.bpf_object__load(self.obj) != 0:
                raise lib.failed("kernel refused lb_relay (no sockmap support?)")
            self.socks = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(self.obj, b"lb_socks"))
            self.peers = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(self.obj, b"lb_peers"))
            program = lib.bpf_program__fd(
                lib.bpf_object__find_program_by_name(self.obj, b"lb_relay"))
            if lib.bpf_prog_attach(program, self.socks, SK_SKB_STREAM_VERDICT, 0) != 0:
                raise lib.failed("cannot attach lb_relay to its sockhash")
        except BaseException:
            lib.bpf_object__close(self.obj)
            raise

    def join(self, a: socket.socket, b: socket.socket) -> tuple[int, int]:
        """Relay ``a`` and ``b`` to each other in the kernel from now on. Bytes
        already waiting in either receive queue go first, in order (a
        SO_RCVLOWAT write makes the kernel run the verdict over them).
        Returns the cookies, for ``part``; OSError when the kernel refuses."""
        cookies = _cookie(a), _cookie(b)
        # Sockets first, then peers: a segment in between is passed to user
        # space (the relay resets the pair); peers first would drop it.
        try:
            for sock, cookie in zip((a, b), cookies):
                self._update(self.socks, cookie, sock.fileno())
            self._update(self.peers, cookies[0], cookies[1])
            self._update(self.peers, cookies[1], cookies[0])
        except OSError:
            self.part(cookies)
            raise
        for sock in (a, b):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        return cookies

    def part(self, cookies: tuple[int, int]) -> None:
        """Forget a pair (closing a socket also takes it out of the sockhash)."""
        for cookie in cookies:
            key = ctypes.c_uint64(cookie)
            self.lib.bpf_map_delete_elem(self.peers, ctypes.byref(key))
            self.lib.bpf_map_delete_elem(self.socks, ctypes.byref(key))

    def _update(self, fd: int, key: int, value: int) -> None:
        k, v = ctypes.c_uint64(key), ctypes.c_uint64(value)
        if self.lib.bpf_map_update_elem(fd, ctypes.byref(k), ctypes.byref(v), 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    @staticmethod
    def received(sock: socket.socket) -> int:
        """Bytes this socket's TCP has received over its life (tcpi_bytes_received)."""
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _INFO_SIZE)
        received: int = struct.unpack_from("Q", raw, 128)[0]
        return received

    @staticmethod
    def written(sock: socket.socket) -> int:
        """Bytes put into this socket's send side over its life: sent once, or
        still waiting (bytes_sent - bytes_retrans + notsent_bytes)."""
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _INFO_SIZE)
        raw = raw.ljust(_INFO_SIZE, b"\0")      # an older kernel's shorter struct
        notsent: int = struct.unpack_from("I", raw, 144)[0]
        sent: int
        retrans: int
        sent, retrans = struct.unpack_from("QQ", raw, 200)
        return sent - retrans + notsent

    @staticmethod
    def consumed(sock: socket.socket) -> int:
        """Bytes received and already taken from the receive queue (by user space,
        before the socket was joined)."""
        queued: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCINQ, b"\0\0\0\0"))[0]
        return Sockmap.received(sock) - queued

    def close(self) -> None:
        self.lib.bpf_object__close(self.obj)
