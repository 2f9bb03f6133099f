"""Checks that the schema's types cannot express: primes, duplicates,
algorithm names, tunables."""

from __future__ import annotations

from .errors import error as _error
from .schema import Config


def run_checks(config: Config, lines: dict, source: str) -> None:
    """Raise ConfigError for the first problem the schema's types let through."""
    _check_balancer(config, lines, source)
    _check_backends(config, lines, source)
    _check_congestion(config, lines, source)
    _check_health(config, lines, source)
    _check_breaker(config, lines, source)


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n ** 0.5) + 1))


def _check_balancer(config: Config, lines: dict, source: str) -> None:
    settings = config.balancer
    if not _is_prime(settings.maglev_table_size):
        raise _error(lines, source, ("balancer", "maglev_table_size"),
                     f"{settings.maglev_table_size} is not prime (65537, 655373 and 5000011 are)")
    if settings.resolve_interval < 1:
        raise _error(lines, source, ("balancer", "resolve_interval"), "must be at least 1s")


def _check_backends(config: Config, lines: dict, source: str) -> None:
    seen: dict[tuple[str, int], int] = {}
    for i, backend in enumerate(config.backends):
        key = (backend.host.lower(), backend.port)
        if key in seen:
            raise _error(lines, source, ("backends", i), f"duplicate backend {backend.name} "
                         f"(already backends[{seen[key]}])")
        seen[key] = i
        if backend.congestion_control is not None:
            try:
                check_algorithm(backend.congestion_control)
            except ValueError as exc:
                raise _error(lines, source, ("backends", i, "congestion_control"),
                             str(exc)) from None


def check_algorithm(name: str) -> None:
    """ValueError, listing what is available, unless a backend may ask for ``name``."""
    known = congestion_algorithms()
    if name not in known:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(known)}")


def congestion_algorithms() -> list[str]:
    """What ``congestion_control`` may name: the kernel's, ours from bpf/, pacer."""
    from ..kernel.bpf_cc import ALGORITHMS
    from ..kernel.tcp_info import kernel_algorithms
    return list(dict.fromkeys([*kernel_algorithms(), *ALGORITHMS, "pacer"]))


def _check_congestion(config: Config, lines: dict, source: str) -> None:
    from ..kernel.bpf_cc import ALGORITHMS, check_tunable
    pacer = config.congestion.pacer
    if not 0.01 <= pacer.interval <= 10:
        raise _error(lines, source, ("congestion", "pacer", "interval"), "must be 10ms to 10s")
    if not pacer.min_rate <= pacer.start_rate <= pacer.max_rate:
        raise _error(lines, source, ("congestion", "pacer"),
                     "needs min_rate <= start_rate <= max_rate")
    for name, values in config.congestion.tunables.items():
        path = ("congestion", "tunables", name)
        if name not in ALGORITHMS:
            raise _error(lines, source, path,
                         f"no BPF algorithm {name!r}; ours are {', '.join(ALGORITHMS)}")
        for key, value in values.items():
            try:
                check_tunable(name, key, value)
            except ValueError as exc:
                raise _error(lines, source, path + (key,), str(exc)) from None


def _check_health(config: Config, lines: dict, source: str) -> None:
    health = config.health
    interval = health.interval or config.balancer.health_check_interval
    key = ("health", "interval") if health.interval else ("balancer", "health_check_interval")
    if interval < 0.01:
        raise _error(lines, source, key, "must be at least 10ms")
    if health.timeout < 0.001:
        raise _error(lines, source, ("health", "timeout"), "must be at least 1ms")
    if health.fast_interval is not None and health.fast_interval < 0.01:
        raise _error(lines, source, ("health", "fast_interval"), "must be at least 10ms")
    for low, high in health.expect_ranges():
        if not 100 <= low <= high <= 599:
            raise _error(lines, source, ("health", "expect"),
                         f"{low}-{high} is not a range of statuses from 100 to 599")


def _check_breaker(config: Config, lines: dict, source: str) -> None:
    breaker = config.breaker
    if breaker.min_calls > breaker.window:
        raise _error(lines, source, ("breaker", "min_calls"),
                     f"{breaker.min_calls} is more than breaker.window ({breaker.window})")
    if breaker.open_for < 0.01:
        raise _error(lines, source, ("breaker", "open_for"), "must be at least 10ms")
    if breaker.max_open_for < breaker.open_for:
        raise _error(lines, source, ("breaker", "max_open_for"),
                     "must be at least breaker.open_for")
    workers = config.balancer.worker_count()
    for key in ("max_connections", "max_pending", "max_requests"):
        limit = getattr(breaker, key)
        if limit is not None and limit < workers:
            raise _error(lines, source, ("breaker", key),
                         f"{limit} is less than the {workers} workers: the limit is shared "
                         "out among them and each needs at least 1")
    if not breaker.failure_on:
        raise _error(lines, source, ("breaker", "failure_on"),
                     "names no failure; set breaker.enabled: false to turn breakers off")
