"""Messages between the control process and the workers (msgpack through
msgspec, never pickle).

Down (control -> worker): versioned state snapshots; a worker applies a newer
one between requests and acknowledges it. Up (worker -> control):
acknowledgements, periodic reports (counters, and each host's tally of the
requests that ended since the last one; the spans of requests traced), and
what must not wait for them:
health verdicts, breaker trips and half-open trials.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from ..tracing.recorder import SpanRecord
from ..upstream.tally import HostFigures


class BackendState(msgspec.Struct, array_like=True):
    host: str
    port: int
    weight: int
    state: str = "ready"      # ready | drain | maint
    cc: str = ""              # congestion control in effect; "" = the kernel's default
    client_side: bool = False
    cc_wanted: str = ""       # what the configuration or lbctl asked for
    cluster: str = "default"  # the backend group
    health: str = "unknown"   # unknown | up | down | slow_start (control/health.py)
    weight_percent: int = 100  # effective weight during slow start
    breaker: str = "closed"   # closed | open | half_open (control/breakers.py)
    lease: int = 0            # half_open: the number of the current grant of permits
    permits: dict[int, int] = {}   # ...and the trial requests it allows, by worker slot


class Snapshot(msgspec.Struct, tag="state", array_like=True):
    version: int
    backends: list[BackendState]
    routes: bytes = b""       # the route table's settings (config.encode_routes)
    certificates: bytes = b""  # the listener's (control/certificates.py)
    tickets: bytes = b""      # session ticket keys, 80 bytes each, the current first


class Ack(msgspec.Struct, tag="ack", array_like=True):
    slot: int
    pid: int
    version: int


class PassiveVerdict(msgspec.Struct, tag="verdict", array_like=True):
    """A worker's passive health verdict: it saw this backend fail (sent at once)."""
    slot: int
    cluster: str
    backend: str
    reason: str


class Tripped(msgspec.Struct, tag="tripped", array_like=True):
    """A worker's own calls tripped a backend's breaker (sent at once)."""
    slot: int
    cluster: str
    backend: str
    reason: str


class Trial(msgspec.Struct, tag="trial", array_like=True):
    """A half-open trial request: ``started``, then ``passed`` or ``failed``."""
    slot: int
    cluster: str
    backend: str
    result: str


class Counters(msgspec.Struct, tag="counters", array_like=True):
    slot: int
    pid: int
    connections: int        # accepted since the worker started
    open: int               # open now
    dropped: int            # up-ring records lost to a full ring
    rejected: int = 0       # requests refused before a backend (400, 408, 431...)
    refused: int = 0        # connections closed at accept: limits.connections reached
    clusters: dict[str, dict[str, dict[str, int]]] = {}   # pool figures by cluster, host
    tcp: dict[str, dict[str, Any]] = {}                  # transport samples by backend (tcp_stats)
    calls: dict[str, bytes] = {}   # breaker marks of the calls since the last report, by backend
    routes: list[int] = []         # requests each route took, in the table's order (since start)
    tls: tuple[int, int] = (0, 0)  # TLS handshakes completed and resumed (since start)
    limited: tuple[int, int] = (0, 0)   # refused by limits.per_client_connections, _rate
    tallies: dict[str, dict[str, HostFigures]] = {}   # by cluster, host: since the last report
    http2: tuple[int, int, int] = (0, 0, 0)   # connections, streams, ended for abuse (since start)
    kernel_tls: dict[str, int] = {}   # connections the kernel encrypts ("kernel"), others by reason


class Spans(msgspec.Struct, tag="spans", array_like=True):
    """Requests a worker traced since its last report (tracing.enabled)."""
    slot: int
    records: list[SpanRecord]
    dropped: int = 0        # not kept: more than tracing's MAX_KEPT in one report


Down = Snapshot
Up = Union[Ack, PassiveVerdict, Tripped, Trial, Counters, Spans]


