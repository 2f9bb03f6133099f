"""Retries of an Exchange: when a failed attempt may go to another backend.

An attempt that failed before any response byte (refused, timed out or reset
connect, the backend closing or resetting, no response head in time) is
tried again on another host when the request can be replayed: nothing of it
was written yet, or its method is idempotent (RFC 9110 section 9.2.2) and it
has no body (bodies are streamed, not kept). A non-idempotent request that
was even partly written is never sent twice. Upgrades are never retried.
The retry budget (Cluster.may_retry) applies to every retry after a failure;
a request moved off a host declared down while it waited (``host_down``) is
exempt.

Apart from that, a request on a reused pooled connection that the backend
had closed (a keep-alive race) is tried once more on the same host over a
fresh connection, when nothing of the response came and it has no body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..upstream.outcome import ErrorKind, Outcome
from .rules import NONE

if TYPE_CHECKING:
    from ..upstream.cluster import Cluster
    from ..upstream.host import Host
    from .response import ResponseReader

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


def replayable(method: bytes, written: bool, has_body: bool, upgrade: bool) -> bool:
    if upgrade:
        return False
    if not written:
        return True
    return method in IDEMPOTENT and not has_body


class Retries:
    """The retry half of an Exchange (a mixin: the Exchange's slots hold its
    state, and it provides the methods named below)."""
    __slots__ = ()
    cluster: "Cluster"
    host: "Host"
    tried: "set[Host] | None"
    response: "ResponseReader | None"
    key: bytes | None
    method: bytes
    req_framing: int
    upgrade: bytes | None
    reused: bool
    attempts: int
    # Provided by the Exchange: written, responding, fail, _open, _use,
    # _drop_attempt, _ms, retry_attempts.

    def _retryable(self) -> bool:
        """A reused connection the backend had closed: safe to try once more on a
        fresh one when nothing of the response came and no body was sent."""
        return (self.reused and self.attempts == 1 and self.written
                and self.req_framing == NONE and self.upgrade is None)

    def _retry(self) -> None:
        self.cluster.pool.count_retry(self.host)
        if self.cluster.pool.can_open(self.host):
            self._open()
        else:
            self.fail(503, ErrorKind.POOL_FULL, f"backend {self.host.name} at pool.max_active")

    # -- another host after a failed attempt -----------------------------------
    def attempt_failed(self, status: int, kind: ErrorKind, detail: str) -> None:
        """This attempt failed before any response byte: another host if the
        request can be replayed, retries are left and the budget allows, else
        the error answer."""
        target = self._retry_target(budgeted=True)
        if target is None:
            self.fail(status, kind, detail)
        else:
            self._fail_over(*target, kind)

    def host_down(self) -> None:
        """The host was declared down while this request waited for a
        connection or its response head: on to another host now if it can be
        replayed; if not, it keeps waiting (the verdict may be wrong, and it
        cannot be resent). The balancer's own decision, not a failure seen:
        exempt from the retry budget."""
        target = self._retry_target(budgeted=False)
        if target is not None:
            self._fail_over(*target, ErrorKind.HOST_DOWN)

    def _retry_target(self, budgeted: bool) -> "tuple[Host, set[Host]] | None":
        cluster, host = self.cluster, self.host
        attempts = self.retry_attempts(cluster.retry_attempts)
        if (self.responding or len(self.tried or ()) >= attempts
                or not replayable(self.method, self.written, self.req_framing != NONE,
                                  self.upgrade is not None)):
            return None
        tried = (self.tried or set()) | {host}
        other = cluster.choose_other(self.key, tried)
        if other is None:
            return None
        if budgeted and not cluster.may_retry():
            cluster.pool.count_budget_exhausted(host)
            return None
        return other, tried

    def _fail_over(self, other: "Host", tried: set["Host"], kind: ErrorKind) -> None:
        cluster, host = self.cluster, self.host
        cluster.report(host, Outcome(cluster.name, host.name, 0, self._ms(), 0, 0, kind,
                                     self.reused))
        cluster.pool.count_retry(host)
        cluster.retried()
        self._drop_attempt()
        if self.tried is None:
            cluster.retrying += 1          # given back when the exchange ends
        self.tried = tried
        if self.response is not None:
            self.response.close()
            self.response = None
        self._use(other)

