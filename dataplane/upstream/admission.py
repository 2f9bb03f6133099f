"""What a cluster answers a request that asks for a connection to a host
and finds no pooled one to take (``Cluster.connection``)."""

from __future__ import annotations

import enum


class Admission(enum.Enum):
    """What ``connection`` answers when it has no pooled connection to hand out."""
    OPEN = "open"                        # a connection slot is yours: open one
    QUEUED = "queued"                    # wait: the waiter's ``dequeued`` brings your turn
    NO_ROOM = "no_room"                  # pool.max_active and pool.max_queue reached
    # A breaker limit reached (this worker's share of it): 503 at once.
    MAX_CONNECTIONS = "max_connections"
    MAX_PENDING = "max_pending"
    MAX_REQUESTS = "max_requests"

    @property
    def limit(self) -> bool:
        """A breaker limit (named in the 503), not the pool's own."""
        return self in (Admission.MAX_CONNECTIONS, Admission.MAX_PENDING,
                        Admission.MAX_REQUESTS)


OPEN, QUEUED, NO_ROOM = Admission.OPEN, Admission.QUEUED, Admission.NO_ROOM
