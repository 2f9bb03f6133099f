"""The route table: ``routes:`` compiled once per configuration, then asked
per request which route (if any) the request takes. No I/O.

First match wins, in the order of the configuration. Compiled so that a
request never scans every route:

- by host: an exact host has its own list; ``*.example.com`` (any depth of
  subdomain, not example.com itself) a list per suffix, the longest suffix
  of the request's host that has one chosen; routes without a host are in
  every list. Each list keeps the configuration's order.
- within a list, by path: exact paths in a dict; prefixes by their first
  segment (``/api/v2/`` under ``/api/``: one lookup with the request's
  first segment, then a string comparison each), shorter prefixes apart;
  regexes by their literal leading part, as prefixes; what a header's value
  decides by header and value; the rest (no path, or a regex with no
  literal start) always; all merged by their order;
- then, in order, what remains of each candidate (method, headers, query,
  path regex) decides; the first that holds wins.

Hosts match case-insensitively, without their port; paths exactly as sent
(before any rewrite), without the query.
"""

from __future__ import annotations

import re
from typing import AnyStr, Callable, Iterable, Sequence
from urllib.parse import parse_qsl

from ..config import RouteSettings
from .route import Condition, Route

_NO_HEADERS: dict[bytes, bytes] = {}
SEEN_HOSTS = 4096           # Host values whose route list is remembered
FOUND_KEPT = 2048           # requests (method, target, Host) whose route is remembered...
FOUND_TARGET = 512          # ...when the target is at most this long


class PathIndex:
    """The routes of one host list, indexed by their path condition."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.exact: dict[str, list[Route]] = {}
        # (prefix, route) by the prefix's first segment; "" for shorter prefixes.
        self.prefix: dict[str, list[tuple[str, Route]]] = {}
        self.rest: list[Route] = []
        # Routes decided first by a header's value: by header name, then value.
        self.by_header: dict[bytes, dict[bytes, list[Route]]] = {}
        for route in routes:
            prefix = route.prefix if route.prefix is not None else _literal_prefix(route.regex)
            if route.exact is not None:
                self.exact.setdefault(route.exact, []).append(route)
            elif prefix:
                self.prefix.setdefault(_first_segment(prefix), []).append((prefix, route))
            elif route.headers and (equals := route.headers[0].equals) is not None:
                by_value = self.by_header.setdefault(route.headers[0].name, {})
                by_value.setdefault(equals, []).append(route)
            else:
                self.rest.append(route)
        self.short = self.prefix.pop("", [])
        self.header_conditions = any(r.headers for r in routes)

    def candidates(self, path: str, named: dict[bytes, bytes]) -> list[Route]:
        """The routes the indexes offer for this path, in order (each index
        is skipped when empty: most tables use one or two of them)."""
        found = self.rest[:]
        if self.exact:
            found += self.exact.get(path, ())
        if self.by_header:
            for name, by_value in self.by_header.items():
                value = named.get(name)
                if value is not None:
                    found += by_value.get(value, ())
        if self.prefix:
            for prefix, route in self.prefix.get(_first_segment(path), ()):
                if path.startswith(prefix):
                    found.append(route)
        if self.short:
            for prefix, route in self.short:
                if path.startswith(prefix):
                    found.append(route)
        if len(found) > 1:
            found.sort(key=_order)
        return found


def _first_segment(path: str) -> str:
    """``/api/v2/x`` -> ``/api/``; "" when the path has no whole first segment
    (``/ap``, ``/``), so that such prefixes are checked for every path."""
    end = path.find("/", 1)
    return path[:end + 1] if end != -1 else ""


def _order(route: Route) -> int:
    return route.index


def _literal_prefix(regex: "re.Pattern[str] | None") -> str:
    """What every path a regex matches starts with: its leading plain
    characters (indexing a regex route by them spares most requests the regex)."""
    if regex is None:
        return ""
    text = regex.pattern
    end = 0
    while end < len(text) and (text[end].isalnum() or text[end] in "/-_~%,;:@&="):
        end += 1
    if end < len(text) and text[end] in "?*{":     # the last plain character is optional
        end -= 1
    return text[:end]


class RouteTable:
    def __init__(self, settings: Iterable[RouteSettings], fallback: str = "default",
                 raw: bytes = b"") -> None:
        """``fallback``: routes_default (``default`` or ``none``); ``raw``: the
        settings as the snapshot carried them, to tell a new table from this one."""
        self.routes = [Route(i, s) for i, s in enumerate(settings)]
        # routes_default: none answers 404 to what no route matches (HTTP) or closes (TCP).
        self.refuses_unmatched = fallback == "none"
        self.raw = raw
        exact = {r.host for r in self.routes if r.host and not r.wildcard}
        wild = {r.host for r in self.routes if r.wildcard}
        self.by_host = {h: PathIndex([r for r in self.routes if _covers(r, h)]) for h in exact}
        self.by_suffix = {s: PathIndex([r for r in self.routes if _covers(r, "x." + s)])
                          for s in wild}
        self.any_host = PathIndex([r for r in self.routes if not r.host])
        self.seen: dict[bytes, PathIndex] = {}   # Host header as sent -> its list
        # Some route looks at request headers (find then needs them).
        self.needs_headers = any(r.headers for r in self.routes)
        # Without header conditions a route depends on method, target and Host
        # alone: what they came to is remembered (bounded), as clients repeat them.
        self.found: dict[tuple[bytes, bytes, bytes], Route | None] = {}

    def find(self, method: bytes, target: bytes, host: bytes,
             headers: Sequence[tuple[bytes, bytes]]) -> Route | None:
        """The first route the request matches, or None (callers skip an empty
        table: routed.py)."""
        if self.needs_headers or len(target) > FOUND_TARGET:
            return self._find(method, target, host, headers)
        key = (method, target, host)
        found = self.found
        if key in found:
            return found[key]
        if len(found) >= FOUND_KEPT:
            found.clear()
        route = found[key] = self._find(method, target, host, headers)
        return route

    def _find(self, method: bytes, target: bytes, host: bytes,
              headers: Sequence[tuple[bytes, bytes]]) -> Route | None:
        path, _, query = target.decode("latin-1").partition("?")
        index = self.seen.get(host)
        if index is None:
            index = self._index(host.decode("latin-1").lower())
            if len(self.seen) >= SEEN_HOSTS:       # bounded: a flood of made-up hosts
                self.seen.clear()
            self.seen[host] = index
        named = _headers(headers) if index.by_header or index.header_conditions else _NO_HEADERS
        query_fields: list[tuple[str, str]] | None = None
        for route in index.candidates(path, named):
            if route.methods is not None and method not in route.methods:
                continue
            if route.regex is not None and route.regex.fullmatch(path) is None:
                continue
            if route.headers and not _all_hold(route.headers, named.get):
                continue
            if route.query:
                if query_fields is None:
                    query_fields = parse_qsl(query, keep_blank_values=True)
                if not _all_hold(route.query, lambda name: _field(query_fields, name)):
                    continue
            return route
        return None

    def _index(self, host: str) -> PathIndex:
        if host.startswith("["):                     # [v6]:port
            host = host[:host.find("]") + 1]
        else:
            host = host.partition(":")[0]
        index = self.by_host.get(host)
        if index is not None:
            return index
        at = host.find(".")
        while at != -1:                              # the longest suffix first
            index = self.by_suffix.get(host[at + 1:])
            if index is not None:
                return index
            at = host.find(".", at + 1)
        return self.any_host


def _covers(route: Route, host: str) -> bool:
    """Can the route's host condition hold for ``host``?"""
    if not route.host:
        return True
    if route.wildcard:
        return host.endswith("." + route.host)
    return host == route.host


def _all_hold(conditions: list[Condition[AnyStr]],
              value_of: Callable[[AnyStr], AnyStr | None]) -> bool:
    for condition in conditions:
        if not condition.holds(value_of(condition.name)):
            return False
    return True


def _headers(headers: Sequence[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (the first value of each)."""
    named: dict[bytes, bytes] = {}
    for key, value in headers:
        key = key.lower()
        if key not in named:
            named[key] = value
    return named


def _field(fields: list[tuple[str, str]], name: str) -> str | None:
    for key, value in fields:
        if key == name:
            return value
    return None

