"""What a finished request leaves in its worker: the request and error
counts, its access line, and its spans when traced. The fast lane writes the
same out (lane_request.py), a call less per request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..logs.access_text import Details

if TYPE_CHECKING:
    from .identity import ClientIdentity
    from ..logs.access_lines import AccessLog
    from ..routing.route import Route
    from ..tracing.recorder import Trace
    from ..worker_view import Stats


class Logged(Protocol):
    """The client connection a request came on, as its access line needs it."""
    access: "AccessLog | None"
    who: "ClientIdentity"


def log_request(stats: "Stats", client: Logged, method: bytes, target: bytes, status: int,
                host: str, bytes_in: int, bytes_out: int, ms: float, error: str,
                route: "Route | None", cluster: str, request: Details,
                trace: "Trace | None") -> None:
    """Count it, write its access line (``host``: HOST:PORT or empty; the
    route and group are named only when a route was taken), and keep its
    spans when it was traced."""
    stats.requests += 1
    if status >= 500 or error:
        stats.errors += 1
    access = client.access
    if access is not None:
        access.request(client.who.log_prefix, method, target, status, host, bytes_in, bytes_out,
                       ms, error, route.name if route is not None else None,
                       cluster if route is not None else None, request.request_id, request)
    if trace is not None:
        traced(trace, method, target, status, host, cluster, route, error, request, client.who)


def traced(trace: "Trace", method: bytes, target: bytes, status: int, host: str, cluster: str,
           route: "Route | None", error: str, request: Details, who: "ClientIdentity") -> None:
    """A traced request's spans, with OpenTelemetry's attribute names where
    they have one."""
    version = request.version if who.protocol == "http/1.1" else "2"
    attributes: dict[str, str | int] = {
        "http.request.method": method.decode("latin-1"), "url.path": target.decode("latin-1"),
        "http.response.status_code": status, "client.address": who.peer.decode(),
        "network.protocol.version": version, "l7lb.cluster": cluster,
        "l7lb.retries": max(0, request.sends - 1)}
    if host:
        attributes["server.address"], _, port = host.rpartition(":")
        attributes["server.port"] = int(port)
    if route is not None:
        attributes["http.route"] = route.name
    if request.request_id:
        attributes["l7lb.request_id"] = request.request_id.decode("latin-1")
    if error:
        attributes["error.type"] = error
    name = f"{attributes['http.request.method']} {route.name if route is not None else cluster}"
    trace.end(name, request.sent_at, status >= 500 or bool(error), attributes)
