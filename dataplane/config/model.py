"""The whole configuration: the sections (schema.py), the backend groups and
the routes (routes.py)."""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple

import msgspec

from .routes import Group, Name, Route
from .schema import (Admin, Backend, Balancer, Breaker, Congestion, Fleet, Health, Limits, Log,
                     Metrics, Pool, Retries, Section, Timeouts)

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
    backends: list[Backend]
    pool: Pool
    health: Health
    breaker: Breaker
    retries: Retries


class Config(Section):
    balancer: Balancer = msgspec.field(default_factory=Balancer)
    backends: list[Backend] = msgspec.field(default_factory=list)
    pool: Pool = msgspec.field(default_factory=Pool)
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    limits: Limits = msgspec.field(default_factory=Limits)
    log: Log = msgspec.field(default_factory=Log)
    admin: Admin = msgspec.field(default_factory=Admin)
    congestion: Congestion = msgspec.field(default_factory=Congestion)
    health: Health = msgspec.field(default_factory=Health)
    retries: Retries = msgspec.field(default_factory=Retries)
    breaker: Breaker = msgspec.field(default_factory=Breaker)
    clusters: dict[Name, Group] = msgspec.field(default_factory=dict)
    routes: list[Route] = msgspec.field(default_factory=list)
    routes_default: Literal["default", "none"] = "default"
    fleet: Fleet | None = None
    metrics: Metrics = msgspec.field(default_factory=Metrics)

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

    def balancer_of(self, name: str) -> Balancer:
        """The balancer section with a group's algorithm and hash key."""
        if name == DEFAULT:
            return self.balancer
        choosing = self.clusters[name].balancer
        return msgspec.structs.replace(
            self.balancer, algorithm=choosing.algorithm or self.balancer.algorithm,
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
