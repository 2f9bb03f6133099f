"""The commands that change a running balancer: one backend (add, remove,
set) and a reload of the configuration file."""

from __future__ import annotations

import os

import click

from .admin import ask, cluster_option


@click.group()
def backend() -> None:
    """Change one backend of the running balancer."""


@backend.command("add")
@click.argument("name")
@click.option("--weight", type=click.IntRange(0, 10000), default=100, show_default=True)
@click.option("--cc", help="Congestion control for its connections (see lbctl cc).")
@cluster_option
@click.pass_context
def backend_add(ctx: click.Context, name: str, weight: int, cc: str | None,
                cluster: str | None) -> None:
    """Add backend NAME (HOST:PORT) to every worker."""
    result = ask(ctx, "backend.add", {"name": name, "weight": weight, "cc": cc,
                                      "cluster": cluster})
    click.echo(f"{result['name']}: added with weight {result['weight']}")


@backend.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove at once, without draining first.")
@click.option("--timeout", type=click.FloatRange(0, 3600), default=30.0, show_default=True,
              help="Seconds to wait for the backend to drain.")
@cluster_option
@click.pass_context
def backend_remove(ctx: click.Context, name: str, force: bool, timeout: float,
                   cluster: str | None) -> None:
    """Drain backend NAME, then remove it (refused while requests remain, unless --force)."""
    ask(ctx, "backend.remove", {"name": name, "force": force, "timeout": timeout,
                                "cluster": cluster}, wait=timeout + 10)
    click.echo(f"{name}: removed")


@backend.command("set")
@click.argument("name")
@click.argument("field", type=click.Choice(["weight", "state", "cc", "client_side",
                                            "breaker"]))
@click.argument("value")
@cluster_option
@click.pass_context
def backend_set(ctx: click.Context, name: str, field: str, value: str,
                cluster: str | None) -> None:
    """NAME (HOST:PORT) weight N | state ready|drain|maint | cc ALGORITHM|default |
    client_side on|off | breaker closed|open. A new algorithm applies to new
    connections; a breaker set open stays open until set closed."""
    if field == "weight":
        try:
            args = {"name": name, "weight": int(value)}
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a whole number", param_hint="VALUE")
    elif field == "cc":
        args = {"name": name, "cc": "" if value == "default" else value}
    elif field == "client_side":
        if value not in ("on", "off"):
            raise click.BadParameter("must be on or off", param_hint="VALUE")
        args = {"name": name, "client_side": value == "on"}
    else:
        args = {"name": name, field: value}
    result = ask(ctx, "backend.set", {**args, "cluster": cluster})
    click.echo(f"{result['name']}: weight {result['weight']}, state {result['state']}, "
               f"breaker {result['breaker']}, cc {result['cc'] or 'default'} "
               f"(in effect: {result['cc_in_effect'] or 'default'})")


@click.command()
@click.option("-c", "--config", "path", type=click.Path(dir_okay=False),
              help="File to load instead of the one the balancer was started with.")
@click.pass_context
def reload(ctx: click.Context, path: str | None) -> None:
    """Validate the configuration file, then apply it to every worker."""
    args = {"path": os.path.abspath(path)} if path else {}
    result = ask(ctx, "reload", args)
    click.echo(f"reloaded: state version {result['version']}, {result['backends']} backends")
    kept = [s for s in result["not_applied"] if s != "backends"]
    if kept:
        click.echo(f"not applied (restart needed): {', '.join(kept)}")
    if "backends" in result["not_applied"]:
        click.echo("backends not applied: this balancer is in a fleet, whose backend set is "
                   "in etcd (change it with lbctl backend)")
