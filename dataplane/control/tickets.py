"""The listener's session ticket keys: made by the control process, the same
for every worker, renewed every ``balancer.tls.ticket_rotation`` with the
previous key kept for one more period so that tickets issued just before a
rotation still resume (dataplane/tls/tickets.py uses them)."""

from __future__ import annotations

import asyncio

import structlog

from ..tls.tickets import new_key
from .state import State

log = structlog.get_logger("l7lb.tls")


class TicketRotation:
    def __init__(self, state: State, every: float) -> None:
        self.state, self.every = state, every
        self.keys = [new_key()]
        state.set_tickets(self.keys[0], publish=False)    # in the first snapshot

    def resume(self, keys: list[bytes]) -> None:
        """The keys of the process this one replaces (an upgrade): tickets it
        issued still resume here."""
        self.keys = keys[:2]
        self.state.set_tickets(b"".join(self.keys), publish=False)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.call_later(self.every, self._rotate)

    def _rotate(self) -> None:
        self.keys = [new_key(), self.keys[0]]
        self.state.set_tickets(b"".join(self.keys))
        log.info("session ticket keys rotated", every_s=self.every)
        self.loop.call_later(self.every, self._rotate)
