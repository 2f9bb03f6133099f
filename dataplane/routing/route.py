"""One route, compiled from its settings: what it matches and what it does.
No I/O."""

from __future__ import annotations

import re
from typing import AnyStr, Generic

from ..config import DEFAULT
from ..config import RouteSettings
from ..config.routes import FieldMatch


class Condition(Generic[AnyStr]):
    """A header or query parameter: present, equal to a value, or matching a
    regex. Header conditions work on bytes (as headers arrive), query ones on
    decoded text."""
    __slots__ = ("name", "equals", "regex")
    name: AnyStr
    equals: AnyStr | None
    regex: "re.Pattern[AnyStr] | None"

    def __init__(self, name: AnyStr, equals: AnyStr | None,
                 regex: "re.Pattern[AnyStr] | None") -> None:
        self.name, self.equals, self.regex = name, equals, regex

    def holds(self, value: AnyStr | None) -> bool:
        if value is None:
            return False
        if self.equals is not None:
            return value == self.equals
        return self.regex is None or self.regex.fullmatch(value) is not None


def header_condition(spec: FieldMatch) -> Condition[bytes]:
    return Condition(spec.name.lower().encode(),
                     spec.equals.encode("latin-1") if spec.equals is not None else None,
                     re.compile(spec.regex.encode()) if spec.regex is not None else None)


def query_condition(spec: FieldMatch) -> Condition[str]:
    return Condition(spec.name, spec.equals,
                     re.compile(spec.regex) if spec.regex is not None else None)


class HeaderEdits:
    """Header lines removed, then set, on one side of an exchange."""
    __slots__ = ("drop", "lines")

    def __init__(self, remove: list[str], set_: dict[str, str]) -> None:
        self.drop = frozenset(n.lower().encode() for n in [*remove, *set_])
        self.lines = [b"%b: %b\r\n" % (n.encode(), v.encode("latin-1")) for n, v in set_.items()]

    def apply(self, lines: list[bytes]) -> list[bytes]:
        """``lines``: header lines as rules.Fields keeps them (name, ": ", value, CRLF)."""
        kept = []
        for at in range(0, len(lines), 4):
            if lines[at].lower() not in self.drop:
                kept += lines[at:at + 4]
        return kept + self.lines


class Route:
    __slots__ = ("index", "name", "host", "wildcard", "exact", "prefix", "regex", "methods",
                 "headers", "query", "cluster", "redirect", "respond", "rewrite_prefix",
                 "request_edits", "response_edits", "request_timeout", "total_timeout",
                 "attempts", "per_try_timeout", "requests", "plain")

    def __init__(self, index: int, spec: RouteSettings) -> None:
        match = spec.match
        self.index = index
        self.name = spec.name or f"#{index}"
        host = (match.host or "").lower()
        self.wildcard = host.startswith("*.")
        self.host = host[2:] if self.wildcard else host
        path = match.path
        self.exact = path.exact if path else None
        self.prefix = path.prefix if path else None
        self.regex = re.compile(path.regex) if path and path.regex else None
        self.methods = frozenset(m.encode() for m in match.method) if match.method else None
        self.headers = [header_condition(c) for c in match.header]
        self.query = [query_condition(c) for c in match.query]
        self.cluster = spec.cluster or DEFAULT
        self.redirect = spec.redirect
        self.respond = spec.respond
        self.rewrite_prefix = spec.rewrite_prefix
        sets, removes = spec.set_headers, spec.remove_headers
        self.request_edits = HeaderEdits(removes.request, sets.request) \
            if sets.request or removes.request else None
        self.response_edits = HeaderEdits(removes.response, sets.response) \
            if sets.response or removes.response else None
        self.request_timeout = spec.timeouts.request
        self.total_timeout = spec.timeouts.total
        retries = spec.retries
        self.attempts = retries.attempts if retries else None
        self.per_try_timeout = retries.per_try_timeout if retries else None
        self.requests = 0          # counted by the worker
        # Nothing for the fast lane to do but send the request on (http/lane.py).
        self.plain = (self.redirect is None and self.respond is None
                      and self.rewrite_prefix is None and self.request_edits is None
                      and self.response_edits is None)

    def rewrite(self, target: bytes) -> bytes:
        """The target with the matched prefix replaced (``rewrite_prefix``)."""
        if self.rewrite_prefix is None or self.prefix is None:
            return target
        return self.rewrite_prefix.encode() + target[len(self.prefix):]

    def location(self, target: bytes, authority: bytes) -> bytes | None:
        """Where a redirect sends the client; None for a scheme change of a
        request without a Host to send it to."""
        redirect = self.redirect
        assert redirect is not None, "a redirecting route"
        if redirect.scheme is not None:
            return b"%b://%b%b" % (redirect.scheme.encode(), authority, target) \
                if authority else None
        assert redirect.location is not None, "checked: a redirect has location or scheme"
        location = redirect.location.encode()
        return location.rstrip(b"/") + target if redirect.keep_path else location
