"""Client load for health tests and scripts/bench-health: threads sending GETs
on fresh connections from the client host, bounded in time, each answer (or
its absence) recorded with when it ended."""

from __future__ import annotations

import threading
import time
from collections import Counter

from topology import Topology



class Load:
    def __init__(self, topo: Topology, clients: int = 4, seconds: float = 20.0,
                 timeout: float = 5.0, path: str = "/", target: str = "lb") -> None:
        self.topo = topo
        self.target = target
        self.request = f"GET {path} HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n".encode()
        self.timeout = timeout
        self.stop = threading.Event()
        self.deadline = time.monotonic() + seconds
        self.results: list[tuple[float, int]] = []     # (ended at, status; 0 = no answer)
        self.failures: Counter[str] = Counter()        # why there was no answer
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]

    @property
    def statuses(self) -> list[int]:
        return [status for _, status in self.results]

    def _run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            status = 0
            try:
                with self.topo.connect("client", self.target, 8080, timeout=self.timeout) as sock:
                    sock.sendall(self.request)
                    answer = b""
                    while chunk := sock.recv(65536):     # to the end: Connection: close
                        answer += chunk
                    if answer.startswith(b"HTTP/1.1 ") and answer[9:12].isdigit():
                        status = int(answer[9:12])
                    else:
                        self.failures[f"answer {answer[:40]!r}"] += 1
            except OSError as exc:
                self.failures[repr(exc)] += 1
            self.results.append((time.monotonic(), status))
            time.sleep(0.005)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(self.timeout + 5)
