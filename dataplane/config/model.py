"""The whole configuration: the sections (schema.py), the backend groups and
the routes (routes.py)."""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple

import msgspec

from .routes import GroupSettings, Name, RouteSettings
from .schema import (AdminSettings, BackendSettings, BalancerSettings, BreakerSettings,
                     CongestionSettings, FleetSettings, HealthSettings, LimitSettings,
                     LogSettings, MetricsSettings, PoolSettings, RequestIdSettings,
                     RetrySettings, Section, TimeoutSettings, TracingSettings)

DEFAULT = "default"                 # the group of the top-level backends
# Sections a group may override, key by key.
GROUP_SECTIONS = ("pool", "health", "breaker", "retries")


def backend_key(cluster: str, name: str) -> str:
    """How the control process tells backends apart: ``HOST:PORT`` in the
    default group, ``GROUP/HOST:PORT`` in others (the same address in two
    groups is two backends)."""
    return name if cluster == DEFAULT else f"{cluster}/{name}"


class Settings(NamedTuple):
    """A group's effective sections, each one filled in."""
    backends: list[BackendSettings]
    pool: PoolSettings
    health: HealthSettings
    breaker: BreakerSettings
    retries: RetrySettings


class Config(Section):
    balancer: BalancerSettings = msgspec.field(default_factory=BalancerSettings)
    backends: list[BackendSettings] = msgspec.field(default_factory=list)
    pool: PoolSettings = msgspec.field(default_factory=PoolSettings)
    timeouts: TimeoutSettings = msgspec.field(default_factory=TimeoutSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    request_id: RequestIdSettings = msgspec.field(default_factory=RequestIdSettings)
    tracing: TracingSettings = msgspec.field(default_factory=TracingSettings)
    admin: AdminSettings = msgspec.field(default_factory=AdminSettings)
    congestion: CongestionSettings = msgspec.field(default_factory=CongestionSettings)
    health: HealthSettings = msgspec.field(default_factory=HealthSettings)
    retries: RetrySettings = msgspec.field(default_factory=RetrySettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    clusters: dict[Name, GroupSettings] = msgspec.field(default_factory=dict)
    routes: list[RouteSettings] = msgspec.field(default_factory=list)
    routes_default: Literal["default", "none"] = "default"
    fleet: FleetSettings | None = None
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)

    def group(self, name: str) -> Settings:
        """A group's effective settings (``default``: the top-level ones).
        After ``parse`` every section of every group is filled in; one left
        out is the top-level one."""
        if name == DEFAULT:
            return Settings(self.backends, self.pool, self.health, self.breaker, self.retries)
        group = self.clusters[name]
        return Settings(group.backends, group.pool or self.pool, group.health or self.health,
                        group.breaker or self.breaker, group.retries or self.retries)

    def group_names(self) -> list[str]:
        return [DEFAULT, *self.clusters]

    def balancer_of(self, name: str) -> BalancerSettings:
        """The balancer section with a group's algorithm, hash key, PROXY
        header, backend TLS and protocol."""
        if name == DEFAULT:
            return self.balancer
        group = self.clusters[name]
        choosing = group.balancer
        return msgspec.structs.replace(
            self.balancer, algorithm=choosing.algorithm or self.balancer.algorithm,
            protocol=group.protocol or self.balancer.protocol,
            hash_key=choosing.hash_key or self.balancer.hash_key,
            send_proxy=choosing.send_proxy or self.balancer.send_proxy,
            backend_tls=choosing.backend_tls or self.balancer.backend_tls)

    def merge_groups(self, raw: dict[str, Any], convert: Callable[[Any, type], Any]) -> None:
        """Fill each group's sections: the top-level one with the keys the group
        gives (``raw``: the groups as written) laid over it. ``convert(data,
        type)`` validates the merged section."""
        for name, group in self.clusters.items():
            given = raw.get(name) or {}
            for key in GROUP_SECTIONS:
                top = getattr(self, key)
                if key in given:
                    merged = {**msgspec.to_builtins(top, enc_hook=float), **given[key]}
                    setattr(group, key, convert(merged, type(top)))
                else:
                    setattr(group, key, top)
