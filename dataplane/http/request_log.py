"""What a finished request leaves in its worker: the request and error
counts, and its access line. The fast lane writes the same out
(lane_request.py), a call less per request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .identity import ClientIdentity
    from ..logs.access_text import Details
    from ..logs.access_lines import AccessLog
    from ..routing.route import Route
    from ..worker_view import Stats


class Logged(Protocol):
    """The client connection a request came on, as its access line needs it."""
    access: "AccessLog | None"
    who: "ClientIdentity"


def log_request(stats: "Stats", client: Logged, method: bytes, target: bytes, status: int,
                host: str, bytes_in: int, bytes_out: int, ms: float, error: str,
                route: "Route | None", cluster: str, request: "Details") -> None:
    """Count it, and write its access line (``host``: HOST:PORT or empty;
    the route and group are named only when a route was taken)."""
    stats.requests += 1
    if status >= 500 or error:
        stats.errors += 1
    access = client.access
    if access is not None:
        access.request(client.who.log_prefix, method, target, status, host, bytes_in, bytes_out,
                       ms, error, route.name if route is not None else None,
                       cluster if route is not None else None, request.request_id, request)
