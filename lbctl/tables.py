"""Human output: rich tables that stay whole when piped."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from rich.console import Console
from rich.table import Table


# How a view prints a table: column names, then rows of cells (None shows "-").
PrintTable = Callable[[list[str], list[list[Any]]], None]


def console() -> Console:
    # Piped output has no terminal width: do not let rich fold or cut columns.
    return Console(width=None if sys.stdout.isatty() else 200)


def table(columns: list[str], title: str | None = None) -> Table:
    return Table(*columns, title=title, box=None, header_style="bold")


def clock(at: float) -> str:
    """A wall-clock time to the millisecond."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"
