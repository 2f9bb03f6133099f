"""What one balancer process hands to the next besides its sockets: the
backend set as changed at run time, health with its phi window, breakers,
session ticket keys and the fleet lease. Plain data (JSON through msgspec),
so that a newer release can read an older one's: unknown fields are
ignored, missing ones take their defaults."""

from __future__ import annotations

import msgspec

from ..channel.messages import BackendState


class HostCarry(msgspec.Struct, omit_defaults=True):
    """A backend's health judgement (health/verdict.py, health/phi.py); times
    are CLOCK_MONOTONIC, shared by every process on the machine."""
    state: str
    since: float
    passing: int = 0
    timeouts: int = 0
    intervals: list[float] = []
    last_probe: float | None = None
    last_seen: float | None = None


class BreakerCarry(msgspec.Struct, omit_defaults=True):
    phase: str
    trips: int = 0
    until: float = 0.0


class Carried(msgspec.Struct, omit_defaults=True):
    version: str                  # of the code that sent it
    pid: int                      # the giver: a control process or an orphaned worker
    address: str                  # bind:port its listeners are bound to
    slots: list[int] = []         # the slot of each listener sent, in order
    metrics: bool = False         # the last socket sent is the metrics listener
    backends: list[BackendState] = []
    file_backends: list[str] = []     # the backend keys its configuration file named
    health: dict[str, HostCarry] = {}
    breakers: dict[str, BreakerCarry] = {}
    tickets: list[bytes] = []     # session ticket keys, the current one first
    fleet_lease: int = 0          # the fleet member's etcd lease, kept alive by the taker
    tunables: dict[str, dict[str, int]] = {}   # the BPF algorithms' (lbctl cc set)


def encode(carried: Carried) -> str:
    return msgspec.json.encode(carried).decode()


def decode(text: str) -> Carried:
    """Raises msgspec.ValidationError / DecodeError on a malformed hand-over."""
    return msgspec.json.decode(text, type=Carried)
