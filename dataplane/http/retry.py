"""When a failed attempt of a request may be tried again. No I/O.

An attempt that failed before any response byte (refused, timed out or reset
connect, the backend closing or resetting, no response head in time) is
tried again on another host when the request can be replayed: nothing of it
was written yet, or its method is idempotent (RFC 9110 section 9.2.2) and it
has no body (bodies are streamed, not kept). A non-idempotent request that
was even partly written is never sent twice. Upgrades are never retried.
The retry budget (upstream/budget.py) applies to every retry after a
failure; a request moved off a host declared down while it waited
(``Exchange.host_down``) is exempt.

Apart from that, a request on a reused pooled connection that the backend
had closed (a keep-alive race) is tried once more on the same host over a
fresh connection, when nothing of the response came and it has no body.
"""

from __future__ import annotations

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


def replayable(method: bytes, written: bool, has_body: bool, upgrade: bool) -> bool:
    """May the request go to another host after a failed attempt?"""
    if upgrade:
        return False
    if not written:
        return True
    return method in IDEMPOTENT and not has_body


def reconnect_allowed(reused: bool, sends: int, written: bool, has_body: bool,
                      upgrade: bool) -> bool:
    """A reused connection the backend had closed: may the request be sent
    once more to the same host, on a new connection?"""
    return reused and sends == 1 and written and not has_body and not upgrade


def attempts_left(tried: int, allowed: int) -> bool:
    """Hosts failed over from so far against ``retries.attempts``."""
    return tried < allowed
