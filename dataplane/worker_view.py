"""What a connection handler (http.client, tcp.session) may use of the worker
that accepted it: a Protocol, so that those folders never import the worker."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import Config
    from .http.identity import ClientIdentity
    from .http.request_id import RequestIds
    from .io.stream import Stream
    from .io.reactor import Reactor
    from .io.sockmap_relay import Joiner
    from .kernel.transport import Transport
    from .limits.per_client import PerClient
    from .logs.access_lines import AccessLog
    from .routing.route import Route
    from .routing.table import RouteTable
    from .tracing.recorder import Tracer
    from .upstream.cluster import Cluster


class Clock:
    """Loop time, refreshed by the worker's timer sweep: cheap to read on the hot path."""
    __slots__ = ("now",)

    def __init__(self, now: float) -> None:
        self.now = now


class Stats:
    """Per-worker counters of what happened before or beside any backend."""
    __slots__ = ("requests", "errors", "rejected", "refused", "accepted", "untrusted",
                 "handshakes", "resumed", "h2_connections", "h2_streams", "h2_calmed")

    def __init__(self) -> None:
        self.requests = self.errors = self.rejected = self.refused = self.accepted = 0
        self.untrusted = 0     # accept_proxy: not from trusted_proxies, or no valid header
        self.handshakes = self.resumed = 0     # TLS: completed, and of those resumed
        # HTTP/2: connections, streams, and connections ended for a flood or a protocol error
        self.h2_connections = self.h2_streams = self.h2_calmed = 0


class Tracked(Protocol):
    """Anything the worker times out and shuts down: connections, sessions, relays."""
    def check(self, now: float) -> None: ...
    def shutdown(self) -> None: ...


class WorkerView(Protocol):
    config: "Config"
    loop: asyncio.AbstractEventLoop
    clock: Clock
    stats: Stats
    per_client: "PerClient | None"     # limits.per_client_* (dataplane/limits)
    reactor: "Reactor"
    transport: "Transport"
    relay_engine: str          # for upgraded HTTP streams and TCP mode
    @property
    def sockmap(self) -> "Joiner | None": ...   # relay: sockmap, its BPF program loaded
    splice_bodies: bool        # large bodies of known length move by splice
    connect_timeout: float
    response_timeout: float    # per try: retries.per_try_timeout or timeouts.request
    stream_timeout: float      # the shortest timeout that can apply while bodies move
    idle_timeout: float        # timeouts.idle
    stopping: bool

    access: "AccessLog | None"  # log.access on
    request_ids: "RequestIds | None"   # request_id.enabled
    tracer: "Tracer | None"            # tracing.enabled
    lane: bool                 # the fast lane may be taken (http/lane.py)
    lane_head: int             # ...by heads of at most this many bytes
    lane_headers: int          # ...and at most this many header fields (limits.headers)
    lane_body: int             # ...and bodies of at most this many bytes

    clusters: dict[str, "Cluster"]   # one per backend group
    default: "Cluster"               # the top-level backends' group
    routes: "RouteTable"
    def cluster_for(self, route: "Route | None") -> "Cluster": ...
    def track(self, conn: Tracked) -> None: ...
    def speak_h2c(self, conn: Tracked, stream: "Stream", who: "ClientIdentity",
                  first: bytes) -> None: ...   # the connection opened with the h2 preface
    def forget(self, conn: Tracked) -> None: ...
