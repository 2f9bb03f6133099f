"""Messages between the control process and the workers (msgpack through
msgspec, never pickle).

Down (control -> worker): versioned state snapshots; a worker applies a newer
one between requests and acknowledges it. Up (worker -> control):
acknowledgements, outcome batches and periodic counters.
"""

from __future__ import annotations

from typing import Union

import msgspec

from ..upstream.outcome import Outcome

OUTCOMES_PER_RECORD = 512


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


class Snapshot(msgspec.Struct, tag="state", array_like=True):
    version: int
    backends: list[BackendState]


class Ack(msgspec.Struct, tag="ack", array_like=True):
    slot: int
    pid: int
    version: int


class Outcomes(msgspec.Struct, tag="outcomes", array_like=True):
    """Finished requests (HTTP) or connections (TCP), in the order they ended."""
    slot: int
    records: list[Outcome]


class Verdict(msgspec.Struct, tag="verdict", array_like=True):
    """A worker's passive health verdict: it saw this backend fail (sent at once)."""
    slot: int
    cluster: str
    backend: str
    reason: str


class Counters(msgspec.Struct, tag="counters", array_like=True):
    slot: int
    pid: int
    connections: int        # accepted since the worker started
    open: int               # open now
    dropped: int            # up-ring records lost to a full ring
    rejected: int = 0       # requests refused before a backend (400, 408, 431...)
    refused: int = 0        # connections closed at accept: limits.connections reached
    clusters: dict[str, dict[str, dict[str, int]]] = {}   # pool figures by cluster, host
    tcp: dict[str, dict] = {}                  # transport samples by backend (tcp_stats)


Down = Snapshot
Up = Union[Ack, Outcomes, Verdict, Counters]


