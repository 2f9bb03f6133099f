"""One backend of a cluster as a worker sees it: where it is, how much it may
take, and the counters of its traffic in this worker.

Who writes what: the Cluster writes admission state, the in-flight count and the passive
error count (``weight``, ``state``, ``health``, ``inflight``, ``failures``); its
breakers write ``breaker``, ``permits``, ``lease``, ``used``, ``trials``, ``calls``
and ``marks``;
exchanges add and remove themselves in ``awaiting``; the Pool
writes the connection fields (``idle``, ``active``, ``waiting``, ``conn_stats``);
the Resolver writes the address; the snapshot writes ``cc`` and
``client_side``. Everyone else only reads.
"""

from __future__ import annotations

import socket
import weakref
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..breaker.machine import Breaker
    from .pool import UpstreamConnection


class PoolStats:
    """Connection counters of one host's pool in one worker."""

    __slots__ = ("opened", "reused", "closed_by_us", "closed_by_peer", "queue_timeouts",
                 "connect_failures", "retries", "retries_budget_exhausted",
                 "over_max_connections", "over_max_pending", "over_max_requests")

    def __init__(self) -> None:
        self.opened = self.reused = self.closed_by_us = self.closed_by_peer = 0
        self.queue_timeouts = self.connect_failures = self.retries = 0
        self.retries_budget_exhausted = 0   # retries refused by the retry budget
        # 503s for a breaker limit (max_connections, max_pending, max_requests)
        self.over_max_connections = self.over_max_pending = self.over_max_requests = 0


class Host:
    __slots__ = ("name", "host", "port", "weight", "address", "family", "idle",
                 "active", "current_weight", "inflight", "waiting",
                 "conn_stats", "state", "cc", "client_side", "sockets", "health", "failures",
                 "awaiting", "breaker", "permits", "lease", "used", "trials", "calls",
                 "marks", "counted")

    def __init__(self, host: str, port: int, weight: int = 100, cc: str = "",
                 client_side: bool = False) -> None:
        self.name = f"{host}:{port}"
        self.host = host
        self.port = port
        self.weight = weight
        self.address: tuple | None = None   # sockaddr once resolved
        self.family = socket.AF_INET
        self.idle: list[UpstreamConnection] = []   # most recently used last
        self.active = 0        # open connections, busy or idle
        self.current_weight = 0   # smooth weighted round robin state
        self.inflight = 0         # requests or connections under way (this worker)
        self.waiting: deque = deque()   # exchanges queued at pool.max_active
        self.conn_stats = PoolStats()
        self.state = "ready"      # admin state: drain and maint take no new requests
        self.health = "unknown"   # unknown | up | down | slow_start, from the control process
        self.failures = 0         # passive: connect errors in a row seen by this worker
        self.awaiting: set = set()   # HTTP exchanges on it with no response head yet
        self.breaker = "closed"   # closed | open | half_open, from the control process
        self.permits = 0          # half-open trial requests this worker may still send
        self.lease = 0            # the grant they come from...
        self.used = 0             # ...and the trials started under it here
        self.trials = 0           # trial requests under way
        self.calls: Breaker | None = None   # this worker's own count of its calls
        self.marks = bytearray()  # those calls for the control process, since the last report
        self.counted = 0          # how many of them this worker's own window has taken
        self.cc = cc              # congestion control in effect: "" is the kernel's default
        self.client_side = client_side
        # Every open upstream socket, for the pacer and for TCP_INFO samples.
        self.sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def set_address(self, family: int, address: tuple | None) -> None:
        self.family, self.address = family, address
