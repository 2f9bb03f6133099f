"""The configuration's backend groups (``clusters:``) and ``routes:``
(docs/routing.md lists every key)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from .schema import (BackendSettings, BackendTlsSettings, BreakerSettings, HealthSettings,
                     PoolSettings, RetrySettings, Section)
from .units import Duration

Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")]
HeaderValue = Annotated[str, msgspec.Meta(pattern=r"^[\t\x20-\x7e]{0,8192}$")]
Path = Annotated[str, msgspec.Meta(pattern=r"^/[!-~]*$", max_length=4096)]


class Choosing(Section):
    """The part of ``balancer`` a group may override."""
    algorithm: Literal["round_robin", "random", "least_request", "ring_hash", "maglev",
                       "bounded_load"] | None = None
    hash_key: Annotated[str, msgspec.Meta(
        pattern=r"^(client_ip|path|(header|cookie|query):[!#$%&'*+.^_`|~0-9A-Za-z-]+)$")] | None = None
    send_proxy: Literal["v1", "v2"] | None = None
    backend_tls: BackendTlsSettings | None = None


class GroupSettings(Section):
    """One backend group; each section given overrides the top-level one key by key."""
    backends: list[BackendSettings] = msgspec.field(default_factory=list)
    protocol: Literal["http1", "h2", "h2c"] | None = None   # unset: balancer.protocol
    balancer: Choosing = msgspec.field(default_factory=Choosing)
    pool: PoolSettings | None = None
    health: HealthSettings | None = None
    breaker: BreakerSettings | None = None
    retries: RetrySettings | None = None


class PathMatch(Section):
    prefix: Path | None = None
    exact: Path | None = None
    regex: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None


class FieldMatch(Section):
    """A header or query parameter: present (neither value nor regex), equal, or matching."""
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    equals: str | None = None
    regex: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None


class Match(Section):
    host: Annotated[str, msgspec.Meta(pattern=r"^(\*\.)?[A-Za-z0-9_.-]{1,253}$")] | None = None
    path: PathMatch | None = None
    method: list[Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{1,20}$")]] | None = None
    header: list[FieldMatch] = msgspec.field(default_factory=list)
    query: list[FieldMatch] = msgspec.field(default_factory=list)


class Redirect(Section):
    location: Annotated[str, msgspec.Meta(pattern=r"^[!-~]{1,2048}$")] | None = None
    scheme: Literal["https", "http"] | None = None   # instead of location: same host and path
    status: Literal[301, 302, 303, 307, 308] = 302
    keep_path: bool = True      # the request's path and query are appended to location


class Respond(Section):
    status: Annotated[int, msgspec.Meta(ge=200, le=599)] = 200
    body: Annotated[str, msgspec.Meta(max_length=65536)] = ""
    content_type: HeaderValue = "text/plain"


class Headers(Section):
    request: dict[HeaderName, HeaderValue] = msgspec.field(default_factory=dict)
    response: dict[HeaderName, HeaderValue] = msgspec.field(default_factory=dict)


class HeaderNames(Section):
    request: list[HeaderName] = msgspec.field(default_factory=list)
    response: list[HeaderName] = msgspec.field(default_factory=list)


class RouteRetries(Section):
    attempts: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    per_try_timeout: Duration | None = None


class RouteTimeouts(Section):
    request: Duration | None = None
    total: Duration | None = None


class RouteSettings(Section):
    match: Match = msgspec.field(default_factory=Match)
    name: Name | None = None
    cluster: Name | None = None          # unset: the default group (unless an answer is set)
    redirect: Redirect | None = None
    respond: Respond | None = None
    rewrite_prefix: Path | None = None   # replaces the matched path prefix
    set_headers: Headers = msgspec.field(default_factory=Headers)
    remove_headers: HeaderNames = msgspec.field(default_factory=HeaderNames)
    timeouts: RouteTimeouts = msgspec.field(default_factory=RouteTimeouts)
    retries: RouteRetries | None = None
