"""``lbctl top``: a per-backend view refreshed every second; q or Ctrl-C quits."""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.live import Live
from rich.table import Table

from .tables import console as make_console
from .tables import table

Fetch = Callable[[str], Any]


def frame(rows: list[dict[str, Any]], rates: dict[str, float], title: str) -> Table:
    out = table(["backend", "state", "weight", "req/s", "requests", "errors", "p50 ms",
                 "p99 ms", "active", "idle"], title)
    for row in rows:
        out.add_row(row["name"], row["state"], str(row["weight"]),
                      f"{rates.get(row['name'], 0.0):.1f}", str(row["requests"]),
                      str(row["errors"]), _ms(row["p50_ms"]), _ms(row["p99_ms"]),
                      str(row["active"]), str(row["idle"]))
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@contextmanager
def _keys() -> Iterator[Callable[[float], str]]:
    """Single keypresses from a terminal; nothing from anything else."""
    if not sys.stdin.isatty():
        def wait(timeout: float) -> str:
            time.sleep(timeout)
            return ""
        yield wait
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 1).decode(errors="replace") if ready else ""
    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run(fetch: Fetch, interval: float = 1.0, once: bool = False) -> None:
    console = make_console()
    previous: dict[str, int] = {}
    last = time.monotonic()

    def render() -> Table:
        nonlocal previous, last
        rows = fetch("backends")
        now = time.monotonic()
        rates = {r["name"]: (r["requests"] - previous.get(r["name"], r["requests"]))
                 / max(now - last, 1e-6) for r in rows}
        previous, last = {r["name"]: r["requests"] for r in rows}, now
        return frame(rows, rates, f"l7lb top  {time.strftime('%H:%M:%S')}  (q quits)")

    if once:
        console.print(render())
        return
    try:
        with _keys() as key, Live(render(), console=console, auto_refresh=False) as live:
            while key(interval).lower() != "q":
                live.update(render(), refresh=True)
    except KeyboardInterrupt:
        pass
