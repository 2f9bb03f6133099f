"""``limits.per_client_connections`` and ``limits.per_client_rate`` in one
worker, over the counts every worker shares (counts.py). No I/O: the worker
asks, and answers the client itself (429, or a closed connection).

HTTP: the rate counts requests; TCP: it counts new connections. Refusals are
counted for the metrics and ``lbctl status``.
"""

from __future__ import annotations

import mmap
import time

from ..config import Config
from .counts import ClientCounts, positions, shared_buffer

Buckets = tuple[int, int]


class PerClient:
    def __init__(self, counts: ClientCounts, connections: int | None, rate: int | None,
                 rate_counts_connections: bool) -> None:
        self.counts = counts
        self.max_connections, self.max_rate = connections, rate
        self.rate_counts_connections = rate_counts_connections
        self.held: dict[object, Buckets] = {}
        self.admitted: Buckets | None = None    # for the next connection tracked
        self.refused_connections = self.refused_requests = 0

    @staticmethod
    def shared_buffer(config: Config) -> mmap.mmap | None:
        """The counts' memory for every worker, made before forking; None when
        neither limit is set."""
        limits = config.limits
        if limits.per_client_connections is None and limits.per_client_rate is None:
            return None
        return shared_buffer(config.balancer.worker_count())

    @classmethod
    def of(cls, config: Config, buffer: mmap.mmap | None, slot: int) -> "PerClient | None":
        limits = config.limits
        if buffer is None:
            return None
        counts = ClientCounts(buffer, config.balancer.worker_count(), slot)
        return cls(counts, limits.per_client_connections, limits.per_client_rate,
                   config.balancer.mode == "tcp")

    def admit(self, address: str) -> str | None:
        """Why a new connection from ``address`` is refused, or None: then
        the next connection tracked (``hold``) counts against the address."""
        where = positions(address)
        counts = self.counts
        if self.max_connections is not None and \
                counts.open_connections(where) >= self.max_connections:
            self.refused_connections += 1
            return "too many connections from this address (limits.per_client_connections)"
        if self.rate_counts_connections and self.max_rate is not None:
            now = time.monotonic()
            if counts.rate(where, now) >= self.max_rate:
                self.refused_requests += 1
                return "too many new connections from this address (limits.per_client_rate)"
            counts.requested(where, now)
        self.admitted = where
        return None

    def hold(self, conn: object) -> None:
        where, self.admitted = self.admitted, None
        if where is not None:
            self.held[conn] = where
            self.counts.opened(where)

    def pass_on(self, old: object, new: object) -> None:
        """``new`` carries on ``old``'s connection (HTTP/1.1 that became h2c)."""
        where = self.held.pop(old, None)
        if where is not None:
            self.held[new] = where

    def release(self, conn: object) -> None:
        where = self.held.pop(conn, None)
        if where is not None:
            self.counts.closed(where)

    def allow_request(self, conn: object) -> bool:
        """HTTP: whether the connection's address is within its request rate
        (a refused request is not counted against it)."""
        where = self.held.get(conn)
        if where is None or self.max_rate is None:
            return True
        now = time.monotonic()
        if self.counts.rate(where, now) >= self.max_rate:
            self.refused_requests += 1
            return False
        self.counts.requested(where, now)
        return True
