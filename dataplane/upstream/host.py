"""One backend of a cluster as a worker sees it: where it is, whether it may
take requests, and what its traffic in this worker came to.

Who writes what: the Cluster writes admission state, the in-flight count and
the passive error count (``weight``, ``state``, ``health``, ``inflight``,
``failures``); its breakers write ``breaker``, ``permits``, ``lease``,
``used``, ``trials``, ``own_breaker``, ``marks`` and ``marks_counted``;
requests waiting for a response head add and remove themselves in
``awaiting``; the Resolver writes the address; the snapshot writes ``cc`` and
``client_side``; the Cluster adds finished requests to ``tally``. Its
connections are the pool's (pool.py), kept apart from it.
"""

from __future__ import annotations

import socket
import weakref
from typing import TYPE_CHECKING, Protocol

from .tally import HostTally

if TYPE_CHECKING:
    from ..breaker.machine import Breaker


class Evictable(Protocol):
    """A request waiting for a response head from a host (see Cluster._evict)."""
    def host_down(self) -> None: ...


Address = tuple[str, int] | tuple[str, int, int, int]


class Host:
    __slots__ = ("name", "host", "port", "weight", "address", "family", "current_weight",
                 "inflight", "state", "cc", "client_side", "sockets", "health", "failures",
                 "awaiting", "breaker", "permits", "lease", "used", "trials", "own_breaker",
                 "marks", "marks_counted", "tally", "__weakref__")

    def __init__(self, host: str, port: int, weight: int = 100, cc: str = "",
                 client_side: bool = False) -> None:
        self.name = f"{host}:{port}"
        self.host = host
        self.port = port
        self.weight = weight
        self.address: Address | None = None   # sockaddr once resolved
        self.family: int = socket.AF_INET
        self.current_weight = 0   # smooth weighted round robin state
        self.inflight = 0         # requests or connections under way (this worker)
        self.state = "ready"      # admin state: drain and maint take no new requests
        self.health = "unknown"   # unknown | up | down | slow_start, from the control process
        self.failures = 0         # passive: connect errors in a row seen by this worker
        self.awaiting: set[Evictable] = set()   # HTTP requests on it with no response head yet
        self.breaker = "closed"   # closed | open | half_open, from the control process
        self.permits = 0          # half-open trial requests this worker may still send
        self.lease = 0            # the grant they come from...
        self.used = 0             # ...and the trials started under it here
        self.trials = 0           # trial requests under way
        self.own_breaker: Breaker | None = None   # this worker's own count of its calls
        self.marks = bytearray()  # those calls for the control process, since the last report
        self.marks_counted = 0    # how many of them this worker's own breaker has taken
        self.cc = cc              # congestion control in effect: "" is the kernel's default
        self.client_side = client_side
        # Every open upstream socket, for the pacer and for TCP_INFO samples.
        self.sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.tally = HostTally()

    def set_address(self, family: int, address: Address | None) -> None:
        self.family, self.address = family, address
