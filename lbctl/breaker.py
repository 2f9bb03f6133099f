"""``lbctl breaker``: each backend's circuit breaker, its window and its trips."""

from __future__ import annotations

from typing import Any

from .tables import PrintTable, clock


def show(result: list[dict[str, Any]], detailed: bool, print_table: PrintTable) -> None:
    print_table(["name", "breaker", "calls", "failures", "slow", "in a row", "trips",
                 "next open s", "refused by cap"],
                [[r["name"], r["label"], r["window"]["calls"], r["window"]["failures"],
                  r["window"]["slow"], r["window"]["failures_in_a_row"], r["trips_total"],
                  r["next_open_s"], r["refused_by_ejection_cap"]] for r in result])
    if not detailed:
        return
    for row in result:
        trial = row["half_open"]
        if trial is not None:
            print_table(["trial permits with worker", "started", "passed", "of"],
                        [[trial["worker"], trial["trials_started"], trial["trials_passed"],
                          trial["trials"]]])
        limits = row.get("limits")
        if limits:
            print_table(["limit", "value", "in use", "refused"],
                        [[k, v["limit"], v["in_use"], v["refused"]] for k, v in limits.items()])
        print_table(["changed at", "from", "to", "reason"],
                    [[clock(t["at"]), t["from"], t["to"], t["reason"]]
                     for t in row["transitions"][-10:]])
