"""Circuit breakers as one worker applies them (docs/breakers.md).

The control process decides (control/breakers.py) from every worker's
outcomes and its word reaches every worker in the snapshots (``breaker``,
and the half-open trial ``permits`` leased to each worker). Within that:

- this worker counts its own calls too, and opens its own view of a backend
  at once when they trip its breaker (within ``max_ejection_percent`` of the
  group's weight); it tells the control process, which decides for all;
- in half_open it lets a request through only with a permit leased to it,
  and reports each trial's start and verdict at once, not with the batches
  (``void`` when the request ended for reasons not the backend's, such as
  the client leaving: the permit is given back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from ..breaker.machine import Breaker
from ..breaker.policy import Judge, judge_of, may_eject, rules_of
from ..config import BreakerSettings
from ..config import backend_key
from .outcome import FAILURE_CLASS, ErrorKind

if TYPE_CHECKING:
    from .host import Host

CLOSED, OPEN = "closed", "open"
NO_ERROR = ErrorKind.NONE


def verdict_of(judge: Judge, status: int, ms: float, kind: ErrorKind) -> tuple[bool, bool] | None:
    """(failed, slow) as a breaker counts a call that ended with ``status``
    after ``ms`` (``kind``: how it failed); None when it was not the backend's
    doing (the client left, the pool was full...)."""
    if kind is NO_ERROR:        # the common case, without hashing the enum
        return status in judge.bad_statuses, ms > judge.slow_ms
    failure = FAILURE_CLASS[kind]
    if failure is None:
        return None
    return failure in judge.errors, ms > judge.slow_ms


class Signals(Protocol):
    """What a worker's clusters tell the control process at once."""
    @property
    def slot(self) -> int: ...

    def verdict(self, cluster: str, backend: str, reason: str) -> None: ...
    def tripped(self, cluster: str, backend: str, reason: str) -> None: ...
    def trial(self, cluster: str, backend: str, result: str) -> None: ...


class WorkerBreakers:
    def __init__(self, cluster: str, settings: BreakerSettings, hosts: list["Host"],
                 signals: Signals, refresh: Callable[[], None]) -> None:
        self.cluster = cluster
        self.enabled = settings.enabled
        self.rules = rules_of(settings)
        self.judge = judge_of(settings)
        self.max_ejection = settings.max_ejection_percent
        self.hosts = hosts
        self.signals = signals
        self.refresh = refresh

    def call(self, host: "Host", status: int, ms: float, kind: ErrorKind) -> None:
        """A call on ``host`` ended: a trial's verdict, or one more call in the window."""
        if not self.enabled:
            return
        verdict = verdict_of(self.judge, status, ms, kind)
        if verdict is None:              # not the backend's doing
            if host.trials:              # nor a trial's verdict: the permit goes back
                self._trial_ended(host, "void")
            return
        bad, slow = verdict
        if host.trials:
            self._trial_ended(host, "failed" if bad or slow else "passed")
        elif host.breaker == CLOSED:
            mark = bad + 2 * slow                   # window.FAILED | window.SLOW
            host.marks.append(mark)
            if mark:           # a bad call is judged at once; good ones at the report
                self.count(host)

    def count(self, host: "Host") -> None:
        """This worker's own breaker takes the calls marked since it last
        looked (counted in C); trip if they say so."""
        own = host.own_breaker
        if own is None:
            own = host.own_breaker = Breaker(self.rules)
        reason = own.record_many(bytes(host.marks[host.marks_counted:]))
        host.marks_counted = len(host.marks)
        if reason is not None and host.breaker == CLOSED:
            self._trip(host, reason)

    def _trip(self, host: "Host", reason: str) -> None:
        members = ((other.weight, other.breaker != CLOSED) for other in self.hosts
                   if other.state != "maint")
        if not may_eject(host.weight, members, self.max_ejection):
            return                       # the control process judges with every worker's calls
        host.breaker = OPEN
        self.refresh()
        self.signals.tripped(self.cluster, host.name, reason)

    def trial_begins(self, host: "Host") -> None:
        """A request goes to a half-open host on one of this worker's permits."""
        host.permits -= 1
        host.used += 1
        host.trials += 1
        self.signals.trial(self.cluster, host.name, "started")
        if not host.permits:
            self.refresh()

    def connected(self, host: "Host") -> None:
        """TCP mode: a trial connection is judged when its connect succeeds,
        not when it ends (it may last for hours)."""
        if host.trials:
            self._trial_ended(host, "passed")

    def _trial_ended(self, host: "Host", result: str) -> None:
        host.trials -= 1
        self.signals.trial(self.cluster, host.name, result)

    def take_marks(self) -> dict[str, bytes]:
        """The calls counted since the last report, by backend key, for the control
        process's breakers (which count every worker's)."""
        out = {}
        for host in self.hosts:
            if host.marks:
                if host.marks_counted < len(host.marks) and host.breaker == CLOSED:
                    self.count(host)
                out[backend_key(self.cluster, host.name)] = bytes(host.marks)
                host.marks.clear()
                host.marks_counted = 0
        return out

    def apply(self, host: "Host", phase: str, lease: int, allowed: int) -> None:
        """The control process's word on ``host``: its phase, and under grant
        ``lease`` the trials this worker may start (less those it has)."""
        if phase == CLOSED and host.breaker != CLOSED and host.own_breaker is not None:
            host.own_breaker.window.clear()    # a fresh start, as in the control process
        if lease != host.lease:
            host.lease, host.used = lease, 0
        host.breaker, host.permits = phase, max(0, allowed - host.used)
