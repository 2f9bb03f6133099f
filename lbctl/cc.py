"""``lbctl cc``: congestion control per backend, and tuning our BPF algorithms."""

from __future__ import annotations

from typing import Any

import click

from .tables import PrintTable

CC_COLUMNS = ["backend", "requested", "in effect", "in use", "conns", "cwnd", "srtt_ms",
              "retrans", "pacing", "max_pacing"]


def rate(bytes_per_second: float | None) -> str | None:
    """A rate for people: bits per second, as tc writes them."""
    if bytes_per_second is None:
        return None
    bits = bytes_per_second * 8
    for unit, size in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bits >= size:
            return f"{bits / size:.1f}{unit}"
    return f"{bits:.0f}bit"


def show(result: dict[str, Any], print_table: PrintTable) -> None:
    bpf = result["bpf"]
    if bpf["usable"]:
        owner = "" if bpf["owner"] else " (registered by another balancer)"
        click.echo(f"BPF: in use{owner}")
    else:
        click.echo(f"BPF: not in use ({bpf['reason']}); "
                   f"{' and '.join(bpf['algorithms'])} fall back to the pacer")
    click.echo(f"available: {' '.join(result['available'])}")
    rows = []
    for b in result["backends"]:
        srtt = b.get("srtt_us")
        rows.append([b["name"], b["requested"] or "default", b["in_effect"] or "default",
                     ",".join(b.get("algorithms", [])) or None, b.get("connections", 0),
                     b.get("cwnd"), None if srtt is None else round(srtt / 1000, 3),
                     b.get("retransmits"), rate(b.get("pacing_rate")),
                     rate(b.get("max_pacing_rate"))])
    print_table(CC_COLUMNS, rows)
    for b in result["backends"]:
        if b.get("auto_reason"):
            click.echo(f"auto {b['name']}: {b['in_effect']} ({b['auto_reason']})")
    for name, algorithm in bpf["algorithms"].items():
        values = " ".join(f"{k}={v}" for k, v in algorithm["tunables"].items())
        state = "registered" if algorithm["registered"] else "not registered"
        click.echo(f"{name} ({state}): {values}")
    p = result["pacer"]
    click.echo(f"pacer: every {p['interval'] * 1000:g}ms, start {rate(p['start_rate'] / 8)}, "
               f"+{rate(p['increase'] / 8)} while clean, x{p['decrease']} on loss or queueing "
               f"(rtt above min by {p['rtt_tolerance']:.0%}), within "
               f"{rate(p['min_rate'] / 8)}..{rate(p['max_rate'] / 8)}")
