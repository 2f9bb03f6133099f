"""A worker's tracer: decides which requests are recorded, gives each its
span IDs, and keeps the finished spans as plain records until the worker's
next report carries them to the control process. No I/O.

Sampling is parent-based: a request whose caller sent a sampled context is
recorded; one that came without a context starts a trace at ``ratio``; one
whose caller did not sample is not recorded but still continued (a new
span ID, so the backend's parent is ours).

Each recorded request gives two spans: the balancer's server span (the
exchange, its retries and the time to answer) and its client span (the
upstream part, from the request sent to its end), whose ID the backend gets
as its parent.
"""

from __future__ import annotations

import os
import random
import time

import msgspec

from ..config import TracingSettings
from .context import Parent, header

MAX_KEPT = 512            # spans kept between two reports; more are counted, not kept


class SpanRecord(msgspec.Struct, array_like=True):
    """One recorded request (both its spans), as the channel carries it."""
    trace_id: str
    parent_id: str            # the caller's span, "" at a trace's root
    server_id: str
    client_id: str
    name: str                 # "METHOD route-or-cluster"
    start_ns: int             # wall clock
    sent_ns: int              # the request went upstream (0: it never did)
    end_ns: int
    error: bool
    attributes: dict[str, str | int]


class Trace:
    """One request's trace context while it is under way."""
    __slots__ = ("tracer", "trace_id", "parent_id", "server_id", "client_id", "sampled",
                 "start_ns", "started", "line")

    def __init__(self, tracer: "Tracer", parent: Parent | None, trace_id: bytes,
                 server_id: bytes, client_id: bytes) -> None:
        self.tracer = tracer
        self.trace_id, self.server_id, self.client_id = trace_id, server_id, client_id
        self.parent_id = parent.span_id if parent is not None else b""
        self.sampled = parent.sampled if parent is not None else True
        self.start_ns, self.started = time.time_ns(), time.monotonic()
        self.line = header(trace_id, client_id, self.sampled)   # for the backend

    def end(self, name: str, sent: float, error: bool, attributes: dict[str, str | int]) -> None:
        """The request is done (``sent``: monotonic, 0 if it never went upstream)."""
        self.tracer.keep(self, name, sent, error, attributes)


class Tracer:
    def __init__(self, settings: TracingSettings) -> None:
        generator = random.Random(os.urandom(16))
        self.bits, self.draw = generator.getrandbits, generator.random
        self.ratio = settings.ratio
        self.spans: list[SpanRecord] = []
        self.dropped = 0

    def begin(self, parent: Parent | None) -> Trace | None:
        """A request's trace: continuing ``parent``, or a new one at ``ratio``
        (None: not sampled, nothing to send or record)."""
        if parent is None:
            return self.start() if self.draw() < self.ratio else None
        return Trace(self, parent, parent.trace_id, b"%016x" % (self.bits(64) or 1),
                     b"%016x" % (self.bits(64) or 1))

    def start(self) -> Trace:
        """A new trace, sampled (the draw made)."""
        return Trace(self, None, b"%032x" % (self.bits(128) or 1),
                     b"%016x" % (self.bits(64) or 1), b"%016x" % (self.bits(64) or 1))

    def keep(self, trace: Trace, name: str, sent: float, error: bool,
             attributes: dict[str, str | int]) -> None:
        """Keep a sampled request's spans."""
        if not trace.sampled:
            return
        if len(self.spans) >= MAX_KEPT:
            self.dropped += 1
            return
        sent_ns = trace.start_ns + int((sent - trace.started) * 1e9) if sent else 0
        self.spans.append(SpanRecord(
            trace.trace_id.decode(), trace.parent_id.decode(), trace.server_id.decode(),
            trace.client_id.decode(), name, trace.start_ns, sent_ns, time.time_ns(), error,
            attributes))

    def take(self) -> tuple[list[SpanRecord], int]:
        """The spans kept since the last call, and how many were dropped."""
        spans, dropped = self.spans, self.dropped
        self.spans, self.dropped = [], 0
        return spans, dropped
