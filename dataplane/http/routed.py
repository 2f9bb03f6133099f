"""What a request's route (dataplane/routing/ decides which) asks of it: the
balancer's own answer (``respond``, ``redirect``, 404 with
``routes_default: none``), or the path rewritten and the request headers
edited on its way to the route's group. No I/O."""

from __future__ import annotations

from ..routing.route import Route

# The balancer's own answer: status, header lines (each ending in CRLF), body.
Answer = tuple[int, bytes, bytes]
NO_ROUTE: Answer = (404, b"", b"no route for this request\n")


def own_answer(route: Route | None, fallback: str, target: bytes,
               authority: bytes) -> Answer | None:
    """The answer the balancer gives itself, or None: the request goes on."""
    if route is None:
        return NO_ROUTE if fallback == "none" else None
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
