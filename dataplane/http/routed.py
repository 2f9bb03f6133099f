"""A request's route applied to its Exchange (dataplane/routing/ decides which
route): the group it goes to, or the balancer's own answer (``respond``,
``redirect``, 404 with ``routes_default: none``); the path rewritten, request
headers edited, the route's timeouts and retries. A mixin: the Exchange's
slots hold the state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import DEFAULT
from . import rules
from .rules import NONE

if TYPE_CHECKING:
    from ..routing.route import Route
    from ..site import Site
    from ..upstream.cluster import Cluster
    from .client import ClientConnection


class Routed:
    __slots__ = ()
    client: "ClientConnection"
    site: "Site"
    route: "Route | None"
    method: bytes
    target: bytes
    headers: rules.Headers
    fields: rules.Fields | None
    status: int
    local: bool
    request_complete: bool
    req_framing: int
    wait: float

    def take_route(self) -> "Cluster | None":
        """The group for this request, or None when the balancer answered it."""
        site = self.site
        route = self.route = site.routes.find(self.method, self.target, self.fields.authority,
                                              self.headers) if site.routes.routes else None
        if route is None:
            if site.routes.fallback == "none":
                self.answer(404, b"", b"no route for this request\n")
                return None
            return site.default
        route.requests += 1
        if route.respond is not None:
            respond = route.respond
            self.answer(respond.status, b"Content-Type: %b\r\n" % respond.content_type.encode(),
                        respond.body.encode())
            return None
        if route.redirect is not None:
            location = route.location(self.target, self.fields.authority or b"")
            if location is None:
                self.answer(400, b"", b"no Host header to redirect with\n")
            else:
                self.answer(route.redirect.status, b"Location: %b\r\n" % location, b"")
            return None
        self.target = route.rewrite(self.target)
        if route.request_edits is not None:
            self.fields.lines = route.request_edits.apply(self.fields.lines)
        self.wait = route.per_try_timeout or route.request_timeout or site.response_timeout
        if route.total_timeout is not None:
            self.client.total_at = site.clock.now + route.total_timeout
        return site.clusters[route.cluster] if route.cluster != DEFAULT else site.default

    def answer(self, status: int, headers: bytes, body: bytes) -> None:
        """The balancer's own answer. The connection stays open for the next
        request, unless the client asked to close, once this one has been read
        whole (at once when it has no body; one with a body is not waited for:
        the connection closes)."""
        self.status, self.local = status, True
        if not self.keep_alive:      # the client asked to close (or HTTP/1.0)
            headers += b"Connection: close\r\n"
        self.client.stream.write(rules.local_response(status, headers, body,
                                                      self.method == b"HEAD"))
        if self.request_complete or self.req_framing != NONE:
            self.client.exchange_done(self, False)

    def retry_attempts(self, default: int) -> int:
        route = self.route
        return route.attempts if route is not None and route.attempts is not None else default
