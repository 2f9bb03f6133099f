"""Where the fleet keeps what in etcd, under the fleet's ``prefix``:

    PREFIX/members/NAME                   this member is alive (lease-bound)
    PREFIX/health/BACKEND/NAME            NAME's observation of BACKEND (lease-bound)
    PREFIX/backends/GROUP/HOST:PORT       a backend of a group, fleet-wide fields
    PREFIX/seeded                         the backend set was seeded from a file

BACKEND is the control process's backend key (HOST:PORT, GROUP/HOST:PORT);
values are JSON objects.
"""

from __future__ import annotations

from typing import NamedTuple


class Layout(NamedTuple):
    prefix: str

    @property
    def members(self) -> str:
        return f"{self.prefix}/members/"

    @property
    def health(self) -> str:
        return f"{self.prefix}/health/"

    @property
    def backends(self) -> str:
        return f"{self.prefix}/backends/"

    @property
    def seeded(self) -> str:
        return f"{self.prefix}/seeded"

    def member(self, name: str) -> str:
        return self.members + name

    def observation(self, backend: str, member: str) -> str:
        return f"{self.health}{backend}/{member}"

    def backend(self, group: str, address: str) -> str:
        return f"{self.backends}{group}/{address}"

    # -- reading keys back ---------------------------------------------------
    def member_of(self, key: str) -> str:
        return key[len(self.members):]

    def observation_of(self, key: str) -> tuple[str, str]:
        """(backend, member) of a health key; backend keys may hold one '/'."""
        backend, _, member = key[len(self.health):].rpartition("/")
        return backend, member

    def backend_of(self, key: str) -> tuple[str, str]:
        """(group, HOST:PORT) of a backend key."""
        group, _, address = key[len(self.backends):].partition("/")
        return group, address
