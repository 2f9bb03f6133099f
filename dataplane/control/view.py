"""What the metrics and the admin commands may use of the running control
process (process.Control): a Protocol, so that neither imports the process
that holds them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..channel.messages import Counters
    from ..config import Config
    from .breakers import BreakerBoard
    from .cc_auto import AutoCongestion
    from .congestion import Congestion
    from .counters import Tally
    from .fleet import FleetLink
    from .health import HealthMonitor
    from .listener_tls import ListenerTls
    from .state import State
    from .supervisor import Supervisor


class ControlView(Protocol):
    config: "Config"
    started: float                     # time.time() at start
    reloads: int
    state: "State"
    health: "HealthMonitor"
    breakers: "BreakerBoard"
    congestion: "Congestion"
    cc_auto: "AutoCongestion"
    tally: "Tally"
    tls: "ListenerTls"
    fleet: "FleetLink | None"          # in a fleet
    supervisor: "Supervisor | None"    # None until run() starts the workers

    def reports(self) -> "list[Counters]": ...
    def reload(self, path: str | None = None) -> dict[str, Any]: ...
    def lineage(self) -> dict[str, Any]: ...
