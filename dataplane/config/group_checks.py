"""Checks of each backend group's merged sections (a group's own keys laid
over the top-level ones; the default group's are the top-level ones), so a
value that is fine alone but wrong beside another is refused wherever the two
meet. An error names the key the group wrote, or the top-level key it
inherited."""

from __future__ import annotations

from .errors import KeyPath, Lines
from .errors import error as _error
from .model import DEFAULT, Config, Settings
from .schema import BreakerSettings, HealthSettings, TimeoutSettings


class Where:
    """Where a key of a group's merged section sits in the file."""

    def __init__(self, group: str, lines: Lines) -> None:
        self.group, self.lines = group, lines

    def __call__(self, section: str, *keys: str) -> KeyPath:
        """The first of ``keys`` the group writes in ``section``; else the
        group's section when it writes one; else the top-level key."""
        if self.group != DEFAULT:
            own: KeyPath = ("clusters", self.group, section)
            for key in keys:
                if (*own, key) in self.lines:
                    return (*own, key)
            if own in self.lines:
                return (*own, keys[0]) if keys else own
        return (section, *keys[:1])

    def written(self, path: KeyPath) -> bool:
        return path in self.lines


def check_groups(config: Config, lines: Lines, source: str) -> None:
    """Raise ConfigError for the first group whose sections do not fit together."""
    workers = config.balancer.worker_count()
    for group in config.group_names():
        settings, where = config.group(group), Where(group, lines)
        problem = (_backends(settings, group) or _protocol(config, group, where, settings.health)
                   or _health(settings.health, config, where)
                   or _breaker(settings.breaker, workers, where)
                   or _timeouts(settings, config.timeouts, where))
        if problem is not None:
            raise _error(lines, source, *problem)


Problem = tuple[KeyPath, str] | None       # where, what is wrong


def backends_path(group: str) -> KeyPath:
    return ("backends",) if group == DEFAULT else ("clusters", group, "backends")


def _backends(settings: Settings, group: str) -> Problem:
    seen: dict[tuple[str, int], int] = {}
    within = backends_path(group)
    for i, backend in enumerate(settings.backends):
        key = (backend.host.lower(), backend.port)
        if key in seen:
            return (*within, i), f"duplicate backend {backend.name} (already backends[{seen[key]}])"
        seen[key] = i
    return None


def _protocol(config: Config, group: str, where: Where, health: HealthSettings) -> Problem:
    """h2 is TLS with ALPN, h2c cleartext; both HTTP only, and no PROXY header
    (one connection carries many clients' requests). gRPC probes need either."""
    balancer = config.balancer_of(group)
    protocol = balancer.protocol
    if protocol == "http1":
        if health.type == "grpc":
            return where("health", "type"), "grpc probes need the group's protocol h2 or h2c"
        return None
    own: KeyPath = ("clusters", group, "protocol")
    at = own if group != DEFAULT and where.written(own) else ("balancer", "protocol")
    if config.balancer.mode != "http":
        return at, f"{protocol} only in http mode"
    if protocol == "h2" and balancer.backend_tls is None:
        return at, "h2 is over TLS: set backend_tls (or use h2c for cleartext)"
    if protocol == "h2c" and balancer.backend_tls is not None:
        return at, "h2c is cleartext, but backend_tls is set (use h2 over TLS)"
    if balancer.send_proxy is not None:
        return at, (f"{protocol} carries many clients on one connection: it cannot "
                    "begin with one client's PROXY header (send_proxy)")
    return None


def _health(health: HealthSettings, config: Config, where: Where) -> Problem:
    if health.interval is None and config.balancer.health_check_interval < 0.01:
        return ("balancer", "health_check_interval"), "must be at least 10ms"
    if health.interval is not None and health.interval < 0.01:
        return where("health", "interval"), "must be at least 10ms"
    if health.timeout < 0.001:
        return where("health", "timeout"), "must be at least 1ms"
    if health.fast_interval is not None and health.fast_interval < 0.01:
        return where("health", "fast_interval"), "must be at least 10ms"
    for low, high in health.expect_ranges():
        if not 100 <= low <= high <= 599:
            return (where("health", "expect"),
                    f"{low}-{high} is not a range of statuses from 100 to 599")
    return None


def _breaker(breaker: BreakerSettings, workers: int, where: Where) -> Problem:
    if breaker.min_calls > breaker.window:
        return (where("breaker", "min_calls", "window"),
                f"{breaker.min_calls} is more than breaker.window ({breaker.window})")
    if breaker.half_open_calls > breaker.min_calls:
        return (where("breaker", "half_open_calls", "min_calls"),
                f"{breaker.half_open_calls} is more than breaker.min_calls "
                f"({breaker.min_calls})")
    if breaker.open_for < 0.01:
        return where("breaker", "open_for"), "must be at least 10ms"
    if breaker.max_open_for < breaker.open_for:
        return where("breaker", "max_open_for", "open_for"), "must be at least breaker.open_for"
    for key in ("max_connections", "max_pending", "max_requests"):
        limit = getattr(breaker, key)
        if limit is not None and limit < workers:
            return (where("breaker", key), f"{limit} is less than the {workers} workers: the "
                                           "limit is shared out among them and each needs at "
                                           "least 1")
    if not breaker.failure_on:
        return (where("breaker", "failure_on"),
                "names no failure; set breaker.enabled: false to turn breakers off")
    return None


def _timeouts(settings: Settings, timeouts: TimeoutSettings, where: Where) -> Problem:
    """With timeouts.total, a timeout the file sets at or above it never fires
    (defaults above it are left alone: the total caps them)."""
    total = timeouts.total
    if total is None:
        return None
    for section, key, value in (("pool", "connect_timeout", settings.pool.connect_timeout),
                                ("pool", "queue_timeout", settings.pool.queue_timeout),
                                ("retries", "per_try_timeout", settings.retries.per_try_timeout)):
        path = where(section, key)
        if value is not None and value >= total and where.written(path):
            return path, (f"{value:g}s never fires: timeouts.total ({total:g}s) ends the "
                          "exchange first")
    return None
