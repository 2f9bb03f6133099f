"""Backend choice. Smooth weighted round robin for now (the hashing issue adds more).

The algorithm is nginx's: each pick adds every backend's weight to its current
weight, takes the largest, and subtracts the total from the winner. Over one
cycle each backend is picked in proportion to its weight, interleaved rather
than in bursts.
"""

from __future__ import annotations

from .backends import Backend


class RoundRobin:
    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends
        self.candidates: list[Backend] = []
        self.total = 0
        self.refresh()

    def refresh(self) -> None:
        """Recompute the set of candidates; call after any up/down or weight change.
        The rotation restarts only when the candidates or their weights changed."""
        candidates = [b for b in self.backends if b.available]
        total = sum(b.weight for b in candidates)
        if candidates == self.candidates and total == self.total:
            return
        self.candidates, self.total = candidates, total
        for backend in self.backends:
            backend.current_weight = 0

    def pick(self) -> Backend | None:
        best: Backend | None = None
        best_weight = -1 << 62
        for backend in self.candidates:
            backend.current_weight += backend.weight
            if backend.current_weight > best_weight:
                best, best_weight = backend, backend.current_weight
        if best is not None:
            best.current_weight -= self.total
        return best
