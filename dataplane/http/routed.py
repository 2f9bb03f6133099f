"""Where a request on the general path goes (``destination``), and what its
route (dataplane/routing/ decides which) asks of it: the balancer's own
answer (``respond``, ``redirect``, 404 with ``routes_default: none``), or
the path rewritten and the request headers edited on its way to the route's
group. No I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..routing.route import Route
from ..upstream.cluster import Cluster
from .codec import request_head
from .request import RequestHead

if TYPE_CHECKING:
    from ..worker_view import WorkerView

# The balancer's own answer: status, header lines (each ending in CRLF), body.
Answer = tuple[int, bytes, bytes]
NO_ROUTE: Answer = (404, b"", b"no route for this request\n")


class Destination(NamedTuple):
    """Where a request on the general path goes, and what it is sent as."""
    cluster: Cluster
    route: Route | None
    key: bytes | None           # the hash key, when the group hashes
    target: bytes               # as rewritten by the route
    forward: bytes              # the head to send upstream


def destination(worker: "WorkerView", head: RequestHead, peer: bytes,
                forwarded: bytes) -> Destination | Answer:
    """The route ``head`` takes (its hit counted) and where that leads: a
    group and the head to send it, or the balancer's own answer."""
    routes = worker.routes
    fields = head.fields
    route = routes.find(head.method, head.target, fields.authority,
                        head.headers) if routes.routes else None
    if route is not None:
        route.requests += 1
    answer = own_answer(route, routes.refuses_unmatched, head.target, fields.authority)
    if answer is not None:
        return answer
    target = head.target
    if route is not None:
        target, fields.lines = edited(route, target, fields.lines)
    cluster = worker.cluster_for(route)
    key = cluster.key_of(peer, target, head.headers) if cluster.hashed else None
    return Destination(cluster, route, key, target, request_head(
        head.method, target, fields, peer, forwarded, head.upgrade is not None))


def own_answer(route: Route | None, refuses_unmatched: bool, target: bytes,
               authority: bytes) -> Answer | None:
    """The answer the balancer gives itself, or None: the request goes on."""
    if route is None:
        return NO_ROUTE if refuses_unmatched else None
    respond = route.respond
    if respond is not None:
        return (respond.status, b"Content-Type: %b\r\n" % respond.content_type.encode(),
                respond.body.encode())
    if route.redirect is not None:
        location = route.location(target, authority)
        if location is None:
            return 400, b"", b"no Host header to redirect with\n"
        return route.redirect.status, b"Location: %b\r\n" % location, b""
    return None


def edited(route: Route, target: bytes, lines: list[bytes]) -> tuple[bytes, list[bytes]]:
    """The target and header lines the route sends on."""
    if route.request_edits is not None:
        lines = route.request_edits.apply(lines)
    return route.rewrite(target), lines
