"""``lbctl fleet``: the members, who probes which backend, and each member's
view of each backend."""

from __future__ import annotations

from typing import Any, Callable

from .tables import PrintTable


def show(result: dict[str, Any], print_table: PrintTable, echo: Callable[[str], None]) -> None:
    etcd = result["etcd"]
    reach = "reachable" if etcd["reachable"] else f"UNREACHABLE ({etcd['error']})"
    echo(f"member {result['member']} of {result['prefix']}: {result['mode']}; "
         f"etcd {etcd['endpoint']} {reach}; {result['probe_replicas']} probers per backend")
    echo(f"members: {', '.join(result['members']) or '-'}")
    members = result["members"]
    rows = []
    for row in result["backends"]:
        seen = row["observations"]
        views = [seen[m]["state"] if m in seen else "" for m in members]
        here = row["here"]
        rows.append([row["backend"], ", ".join(row["probers"]), row["verdict"],
                     here["health"], "yes" if here["probed"] else "no", *views])
    print_table(["backend", "probers", "fleet", "here", "probed here", *members], rows)
