"""The soak's chaos (scripts/soak.py): one disruption at a time, each kind
once per round of ten in a random order, each recorded with the window in
which it may make requests fail. Only the disruptions that take something away (a backend killed, frozen or cut off, a
worker killed) explain failures; reloads, lbctl changes and hostile clients
must fail nobody but themselves."""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass

from topology import Topology, lbctl_path

SETTLE = 1.0        # seconds after a disruption ends in which it may still show


@dataclass
class Event:
    kind: str
    target: str
    started: float
    ended: float
    disruptive: bool


class Chaos:
    def __init__(self, topo: Topology, backends: dict[str, list], balancer,
                 restart, seed: int = 11) -> None:
        """``backends``: host -> its processes (HTTP and TCP backend);
        ``restart(host)``: start them again, returning the new processes."""
        self.topo, self.backends, self.balancer, self.restart = topo, backends, balancer, restart
        self.rng = random.Random(seed)
        self.events: list[Event] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.order: list = []
        self.actions = [self.kill_backend, self.freeze_backend, self.drop_packets,
                        self.kill_worker, self.reload, self.change_weights, self.drain,
                        self.remove_and_add, self.abort_clients, self.slowloris]

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        self.thread.join(60)

    def _run(self) -> None:
        while not self.stop.wait(self.rng.uniform(1.0, 2.5)):
            if not self.order:          # every kind once per round, in a random order
                self.order = self.rng.sample(self.actions, len(self.actions))
            action = self.order.pop()
            started = time.monotonic()
            target, disruptive = action()
            self.events.append(Event(action.__name__, target, started, time.monotonic(),
                                     disruptive))

    def explains(self, started: float, ended: float) -> Event | None:
        """A disruptive event whose window overlaps [started, ended]."""
        for event in self.events:
            if event.disruptive and event.started - SETTLE <= ended and \
                    started <= event.ended + SETTLE:
                return event
        return None

    def near(self, when: float, origin: float) -> list:
        """The events within 3 s of ``when`` (times from ``origin``), to read a failure by."""
        return [(e.kind, e.target, round(e.started - origin, 2), round(e.ended - origin, 2))
                for e in self.events if e.started - 3 <= when <= e.ended + 3]

    def _pause(self, low: float, high: float) -> None:
        self.stop.wait(self.rng.uniform(low, high))

    # -- disruptions ------------------------------------------------------------
    def kill_backend(self) -> tuple[str, bool]:
        host = self.rng.choice(sorted(self.backends))
        for proc in self.backends[host]:
            proc.kill()
            proc.wait(5)
        self._pause(1.0, 3.0)
        self.backends[host] = self.restart(host)
        return host, True

    def freeze_backend(self) -> tuple[str, bool]:
        host = self.rng.choice(sorted(self.backends))
        for proc in self.backends[host]:
            os.kill(proc.pid, signal.SIGSTOP)
        self._pause(1.0, 2.0)
        for proc in self.backends[host]:
            os.kill(proc.pid, signal.SIGCONT)
        return host, True

    def drop_packets(self) -> tuple[str, bool]:
        host = self.rng.choice(sorted(self.backends))
        nft = ["nft", "-f", "-"]
        rules = "table inet soak { chain input { type filter hook input priority 0; drop; } }"
        self.topo.run(host, nft, input=rules.encode())
        self._pause(1.0, 2.0)
        self.topo.run(host, ["nft", "delete", "table", "inet", "soak"])
        return host, True

    def kill_worker(self) -> tuple[str, bool]:
        pids = workers(self.balancer.pid)
        if not pids:
            return "none", False
        pid = self.rng.choice(pids)
        os.kill(pid, signal.SIGKILL)
        self._pause(0.5, 1.0)
        return str(pid), True

    # -- changes that must fail nobody ---------------------------------------------
    def reload(self) -> tuple[str, bool]:
        self.balancer.send_signal(signal.SIGHUP)
        return "sighup", False

    def _lbctl(self, *args: str) -> None:
        subprocess.run([lbctl_path(), "--socket", str(self.topo.tmp / "admin.sock"), *args],
                       capture_output=True, timeout=30)

    def _name(self) -> str:
        return f"{self.topo.hosts[self.rng.choice(sorted(self.backends))]}:8000"

    def change_weights(self) -> tuple[str, bool]:
        name = self._name()
        self._lbctl("backend", "set", name, "weight", str(self.rng.randint(1, 5)))
        return name, False

    def drain(self) -> tuple[str, bool]:
        name = self._name()
        self._lbctl("backend", "set", name, "state", "drain")
        self._pause(1.0, 2.0)
        self._lbctl("backend", "set", name, "state", "ready")
        return name, False

    def remove_and_add(self) -> tuple[str, bool]:
        name = self._name()
        self._lbctl("backend", "remove", name)
        self._pause(0.5, 1.5)
        self._lbctl("backend", "add", name)
        return name, False

    # -- hostile clients (their own requests are not counted) -----------------------
    def abort_clients(self) -> tuple[str, bool]:
        for head in (b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nxx",
                     b"GET /bytes/5000000 HTTP/1.1\r\nHost: a\r\n\r\n"):
            sock = self.topo.connect("client", "lb", 8080, timeout=5)
            sock.sendall(head)
            if head.startswith(b"GET"):
                sock.recv(1000)                     # mid-response
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()                            # a reset, as a crashed client leaves it
        return "mid-request, mid-response", False

    def slowloris(self) -> tuple[str, bool]:
        socks = [self.topo.connect("client", "lb", 8080, timeout=5) for _ in range(20)]
        for byte in b"GET / HTTP/1.1\r\nHo":
            for sock in socks:
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    pass
            if self.stop.wait(0.1):
                break
        for sock in socks:
            sock.close()
        return "20 clients", False


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def workers(pid: int) -> list[int]:
    """The balancer's workers: its children forked from it (multiprocessing's
    resource tracker, a child too, runs another program)."""
    def comm(p: int) -> str:
        try:
            return open(f"/proc/{p}/comm").read()
        except OSError:
            return ""
    return [child for child in _children(pid) if comm(child) == comm(pid)]
