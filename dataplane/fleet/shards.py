"""Which members probe a backend: rendezvous (highest random weight) hashing
of (backend, member) over the live members, the top ``replicas`` of them.

Every member computes the same answer from the same live set, with no
coordination; when a member leaves, only the backends it probed move, each to
the member next in its order.
"""

from __future__ import annotations

from collections.abc import Iterable

import xxhash


def score(backend: str, member: str) -> int:
    return xxhash.xxh64_intdigest(f"{backend}\0{member}".encode())


def probers(backend: str, members: Iterable[str], replicas: int) -> list[str]:
    """The members that probe ``backend``, best first."""
    ranked = sorted(members, key=lambda member: score(backend, member), reverse=True)
    return ranked[:replicas]
