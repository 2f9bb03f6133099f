"""A request on its way: given its ID, routed (its group, or the balancer's
own answer), its timeouts.total armed, and started. The same for an HTTP/1.1 request and
an HTTP/2 stream."""

from __future__ import annotations

from typing import Protocol

from .exchange import Exchange
from .identity import ClientIdentity
from .routed import Destination, destination


class TotalClock(Protocol):
    """The deadline timeouts.total is kept in (timer.Timer)."""
    total_at: float


def launch(exchange: Exchange, who: ClientIdentity, timer: TotalClock,
           cap: float | None = None) -> None:
    """``cap``: seconds the client gives the whole request (gRPC's
    grpc-timeout), if it sets a deadline of its own."""
    worker = exchange.worker
    total: float | None = worker.config.timeouts.total
    head = exchange.head
    if head is not None:      # None: the fast lane routed it already
        forwarded = who.forwarded
        ids = worker.request_ids
        if ids is not None:
            fields = head.fields
            exchange.request_id, line, fields.lines = ids.taken(fields.lines)
            forwarded = line + forwarded
        where = destination(worker, head, who.peer, forwarded)
        if not isinstance(where, Destination):
            exchange.answer(*where)
            return
        exchange.target = where.target
        exchange.routed(where.cluster, where.route, where.key, where.forward)
        if where.route is not None and where.route.total_timeout is not None:
            total = where.route.total_timeout
    if cap is not None:
        total = cap if total is None else min(total, cap)
    if total is not None:
        timer.total_at = worker.clock.now + total
    exchange.start(None)
