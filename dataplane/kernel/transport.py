"""Per-backend TCP tuning inside a worker: the congestion-control algorithm on
upstream sockets (and on client sockets for ``client_side`` backends), the
pacer's timer, and the TCP_INFO summaries that ``lbctl cc`` shows.

The control process decides which algorithm is in effect for each backend
(control/congestion.py) and sends it down in the state snapshot as ``Backend.cc``.
"""

from __future__ import annotations

import socket
import weakref
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import structlog

from .pacer import Pacer
from .tcp_info import NO_PACING_CAP, algorithm, sample, set_algorithm, set_pacing_cap

if TYPE_CHECKING:
    from ..config import PacerSettings

log = structlog.get_logger("l7lb.transport")
PACER = "pacer"
SAMPLE_EVERY = 1.0        # seconds between TCP_INFO summaries sent upward
MAX_SAMPLED = 256         # connections sampled per backend and summary


class Backend(Protocol):
    """What tuning needs of a backend (upstream.host.Host has it)."""
    name: str
    cc: str                  # algorithm in effect; "" is the kernel's default
    client_side: bool
    sockets: "weakref.WeakSet[socket.socket]"   # its open upstream sockets


class Transport:
    def __init__(self, settings: "PacerSettings") -> None:
        self.pacer = Pacer(settings)
        with socket.socket() as probe:      # this namespace's default
            self.default = algorithm(probe) or ""
        self.clients: weakref.WeakKeyDictionary[socket.socket, str] = weakref.WeakKeyDictionary()
        # Some client socket was given a backend's algorithm (len(clients) is a
        # Python call per request; this is a read).
        self.clients_tuned = False
        self._warned: set[tuple[str, str]] = set()
        self._summary: dict[str, dict[str, Any]] = {}
        self._summary_at = -SAMPLE_EVERY

    # -- choosing ----------------------------------------------------------
    def before_connect(self, sock: socket.socket, backend: Backend) -> None:
        """Set the backend's algorithm on a new upstream socket."""
        if backend.cc and backend.cc != PACER:
            self._set(sock, backend.cc, backend)

    def connected(self, sock: socket.socket, backend: Backend) -> None:
        backend.sockets.add(sock)
        if backend.cc == PACER:
            self.pacer.adopt(sock)

    def serving(self, sock: socket.socket, backend: Backend) -> None:
        """A client's request goes to ``backend``: give the client socket that
        backend's algorithm if it asks for client_side, else the default back."""
        wanted = backend.cc if backend.client_side and backend.cc else None
        current = self.clients.get(sock)
        if wanted == current:
            return
        if current == PACER:
            self.pacer.flows.pop(sock, None)
            set_pacing_cap(sock, NO_PACING_CAP)
        if wanted is None:
            self.clients.pop(sock, None)
            self._set(sock, self.default, backend)
            return
        self.clients[sock] = wanted
        self.clients_tuned = True
        if wanted == PACER:
            self.pacer.adopt(sock)
        else:
            self._set(sock, wanted, backend)

    def _set(self, sock: socket.socket, name: str, backend: Backend) -> None:
        try:
            set_algorithm(sock, name)
        except OSError as exc:
            if (backend.name, name) not in self._warned:   # once, not per connection
                self._warned.add((backend.name, name))
                log.error("congestion control not available; kernel default used",
                          backend=backend.name, algorithm=name, error=exc.strerror)

    # -- timers ------------------------------------------------------------
    def pace(self, backends: list[Backend]) -> None:
        """One pacer interval over every paced socket."""
        for backend in backends:
            if backend.cc == PACER:
                self.pacer.tick(list(backend.sockets))
        for sock, name in list(self.clients.items()):
            if name == PACER:
                self.pacer.tick([sock])       # clients are different paths

    def summary(self, backends: Sequence[Backend], now: float) -> dict[str, dict[str, Any]]:
        """Per backend, from TCP_INFO of its open upstream sockets (refreshed at
        most every SAMPLE_EVERY seconds): what lbctl cc shows."""
        if now - self._summary_at < SAMPLE_EVERY:
            return self._summary
        self._summary_at = now
        self._summary = {b.name: s for b in backends if (s := _summarise(b))}
        return self._summary


def _summarise(backend: Backend) -> dict[str, Any] | None:
    """Sums, so that the control process can add up the workers' figures."""
    rows, names = [], set()
    for sock in list(backend.sockets)[:MAX_SAMPLED]:
        info = sample(sock)
        if info is None or sock.fileno() < 0:
            continue
        rows.append(info)
        names.add(algorithm(sock) or "?")
    if not rows:
        return None
    caps = [r.max_pacing_rate for r in rows if r.max_pacing_rate != NO_PACING_CAP]
    return {"connections": len(rows), "algorithms": sorted(names),
            "cwnd": sum(r.cwnd for r in rows), "srtt_us": sum(r.rtt_us for r in rows),
            "srtt_max_us": max(r.rtt_us for r in rows),
            "retransmits": sum(r.total_retrans for r in rows),
            "segments": sum(r.segs_out for r in rows),
            "delivered_ce": sum(r.delivered_ce for r in rows),
            "min_rtt_us": min(r.min_rtt_us for r in rows),
            "pacing_rate": sum(r.pacing_rate for r in rows),
            "capped": len(caps), "max_pacing_rate": sum(caps)}
