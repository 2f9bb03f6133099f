"""Which certificate answers a server name (SNI), without I/O: an exact name
first, then a wildcard one label deep (``*.example.com`` covers
``a.example.com``, not ``example.com`` nor ``a.b.example.com``), else the
first certificate. Names compare without case."""

from __future__ import annotations

from collections.abc import Iterable


class NameIndex:
    def __init__(self, names_per_certificate: Iterable[Iterable[str]]) -> None:
        self.exact: dict[str, int] = {}
        self.wildcard: dict[str, int] = {}      # "example.com" for "*.example.com"
        for index, names in enumerate(names_per_certificate):
            for name in names:
                name = name.lower().rstrip(".")
                table, key = ((self.wildcard, name[2:]) if name.startswith("*.")
                              else (self.exact, name))
                table.setdefault(key, index)    # the first certificate naming it wins

    def pick(self, server_name: str | None) -> int:
        """The index of the certificate for ``server_name`` (0 when none fits)."""
        if not server_name:
            return 0
        name = server_name.lower().rstrip(".")
        found = self.exact.get(name)
        if found is not None:
            return found
        _, dot, parent = name.partition(".")
        return self.wildcard.get(parent, 0) if dot else 0
