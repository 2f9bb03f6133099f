"""What every management command shares: a call on the admin socket that
exits with lbctl's code when it fails, --json, tables, and naming a backend."""

from __future__ import annotations

import json
import sys

from typing import Any

import click

from .client import CommandFailed, call
from .tables import console, table


def ask(ctx: click.Context, cmd: str, args: dict[str, Any] | None = None,
        wait: float = 10.0) -> Any:
    try:
        return call(ctx.obj["socket"], cmd, args, timeout=wait)
    except CommandFailed as exc:
        click.echo(f"lbctl: {exc}", err=True)
        sys.exit(exc.exit_code)


json_flag = click.option("--json", "as_json", is_flag=True, help="Print the raw result.")
cluster_option = click.option("--cluster", help="The backend's group (default: default).")


def printed_raw(result: object, as_json: bool) -> bool:
    """With --json the result is printed as the balancer sent it."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
    return as_json


def print_table(columns: list[str], rows: list[list[Any]]) -> None:
    out = table(columns)
    for row in rows:
        out.add_row(*("-" if cell is None else str(cell) for cell in row))
    console().print(out)


def named(name: str | None, cluster: str | None) -> dict[str, Any]:
    return {"name": name, "cluster": cluster} if name else {}
