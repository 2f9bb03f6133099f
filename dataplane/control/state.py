"""The state the workers route by, held by the control process: the backend
set with weights, admin states and congestion choice, published as versioned
snapshots.

Every producer of backend state (the configuration file, admin commands,
health checks, breakers and the fleet's peers) changes it through
``publish``; whoever sends
snapshots to the workers subscribes with ``on_publish``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import msgspec

from ..channel.messages import BackendState, Snapshot
from ..config import Config, backend_key, encode_routes
from .congestion import AUTO, Congestion

DEFAULT = "default"      # the group of the top-level backends


def name_of(state: BackendState) -> str:
    """The backend's key (config.backend_key): HOST:PORT, GROUP/HOST:PORT."""
    return backend_key(state.cluster, f"{state.host}:{state.port}")


def states_of(config: Config, previous: Sequence[BackendState] = ()) -> list[BackendState]:
    """Backend states from a file; a backend already known keeps its admin state,
    its health and its breaker."""
    kept = {(s.cluster, s.host, s.port): s for s in previous}
    out = []
    for group in config.group_names():
        for b in config.group(group).backends:
            old = kept.get((group, b.host, b.port))
            # An auto backend keeps what control/cc_auto.py picked for it.
            cc = (old.cc if old is not None and old.cc_wanted == b.congestion_control == AUTO
                  else Congestion.effective(b.congestion_control))
            out.append(BackendState(
                b.host, b.port, b.weight, old.state if old else "ready", cc, b.client_side,
                b.congestion_control or "", group, old.health if old else "unknown",
                old.weight_percent if old else 100, old.breaker if old else "closed",
                old.lease if old else 0, old.permits if old else {}))
    return out


class State:
    def __init__(self) -> None:
        self.version = 1
        self.backends: list[BackendState] = []
        self.routes = b""          # config.encode_routes of the routes in use
        self.certificates = b""    # the listener's, as control/certificates.py copied them
        self.tickets = b""         # session ticket keys (control/tickets.py)
        self.snapshot = Snapshot(self.version, self.backends)
        self.state_changed: dict[str, float] = {}    # backend name -> when its state changed
        self._subscribers: list[Callable[[Snapshot], None]] = []

    def on_publish(self, subscriber: Callable[[Snapshot], None]) -> None:
        self._subscribers.append(subscriber)

    def start(self, config: Config, certificates: bytes = b"") -> None:
        """The first snapshot, from the file, before any worker runs."""
        self.backends = states_of(config)
        self._files(config, certificates)
        self.snapshot = Snapshot(self.version, self.backends, self.routes, self.certificates,
                                 self.tickets)
        now = time.time()
        self.state_changed = {name_of(s): now for s in self.backends}

    def load(self, config: Config, certificates: bytes = b"") -> None:
        """A reloaded file: its backends (keeping admin states of known ones)
        its routes and its certificates (copied again)."""
        self._files(config, certificates)
        self.publish(states_of(config, self.backends))

    def load_routes(self, config: Config, certificates: bytes = b"") -> None:
        """A reloaded file's routes and certificates only (a fleet keeps its
        backend set in etcd)."""
        self._files(config, certificates)
        self.publish(self.backends)

    def set_tickets(self, keys: bytes, publish: bool = True) -> None:
        self.tickets = keys
        if publish:
            self.publish(self.backends)

    def _files(self, config: Config, certificates: bytes) -> None:
        self.routes = encode_routes(config)
        self.certificates = certificates

    def revise(self, fields_of: Callable[[BackendState], dict[str, Any] | None],
               force: bool = False) -> None:
        """Publish the backends with ``fields_of(backend)`` replaced in each, if
        that changes any (or ``force``): how health and breakers publish."""
        updated, changed = [], force
        for backend in self.backends:
            fields = fields_of(backend)
            if fields and any(getattr(backend, k) != v for k, v in fields.items()):
                backend = msgspec.structs.replace(backend, **fields)
                changed = True
            updated.append(backend)
        if changed:
            self.publish(updated)

    def find(self, name: str) -> BackendState | None:
        for state in self.backends:
            if name_of(state) == name:
                return state
        return None

    def publish(self, backends: list[BackendState]) -> None:
        """Make ``backends`` the next snapshot version and hand it to subscribers."""
        before = {name_of(s): s.state for s in self.backends}
        now = time.time()
        for state in backends:
            if before.get(name_of(state)) != state.state:
                self.state_changed[name_of(state)] = now
        self.backends = backends
        self.version += 1
        self.snapshot = Snapshot(self.version, backends, self.routes, self.certificates,
                                 self.tickets)
        for subscriber in self._subscribers:
            subscriber(self.snapshot)
