"""A request on its way: given its ID and trace context, routed (its group, or the balancer's
own answer), its timeouts.total armed, and started. The same for an HTTP/1.1 request and
an HTTP/2 stream."""

from __future__ import annotations

from typing import Protocol

from ..tracing.context import NAME as TRACEPARENT, parse as parse_traceparent
from .codec import pop_header
from .exchange import Exchange
from .identity import ClientIdentity
from .request import RequestHead
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
        where = destination(worker, head, who.peer, _stamped(exchange, head, who.forwarded))
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


def _stamped(exchange: Exchange, head: RequestHead, forwarded: bytes) -> bytes:
    """The request's ID and trace context, taken from its header lines and
    given to ``exchange``; ``forwarded`` with the lines that carry them on."""
    worker, fields = exchange.worker, head.fields
    ids = worker.request_ids
    if ids is not None:
        exchange.request_id, line, fields.lines = ids.taken(fields.lines)
        forwarded = line + forwarded
    tracer = worker.tracer
    if tracer is not None:
        values, fields.lines = pop_header(fields.lines, TRACEPARENT)
        # Two traceparent headers are no context at all (W3C): a new trace.
        trace = exchange.trace = tracer.begin(
            parse_traceparent(values[0]) if len(values) == 1 else None)
        if trace is not None:
            forwarded += trace.line
    return forwarded
