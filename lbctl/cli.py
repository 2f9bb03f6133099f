"""The lbctl command line: run, check and demo (management commands over the
admin socket arrive with the admin issue)."""

from __future__ import annotations

import sys

import click

from dataplane import __version__
from dataplane.config import ConfigError, load

EXIT_CONFIG = 2


def _load_or_exit(path: str):
    try:
        return load(path)
    except ConfigError as exc:
        click.echo(f"lbctl: configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lbctl")
@click.option("--socket", "socket_path", default="/run/l7lb/admin.sock", show_default=True,
              help="Admin socket of a running balancer.")
@click.pass_context
def main(ctx: click.Context, socket_path: str) -> None:
    """Run and manage the l7lb load balancer."""
    ctx.obj = {"socket": socket_path}


@main.command()
@click.option("-c", "--config", "path", required=True, type=click.Path(dir_okay=False),
              help="YAML configuration file.")
def run(path: str) -> None:
    """Run the balancer in the foreground until SIGTERM or Ctrl-C."""
    from dataplane.serve import serve
    sys.exit(serve(_load_or_exit(path), path))


@main.command()
@click.option("-c", "--config", "path", required=True, type=click.Path(dir_okay=False),
              help="YAML configuration file.")
def check(path: str) -> None:
    """Validate a configuration file and start nothing (exit 0, or 2 on error)."""
    config = _load_or_exit(path)
    click.echo(f"{path}: configuration OK ({len(config.backends)} backends, "
               f"mode {config.balancer.mode}, port {config.balancer.port})")


@main.command()
@click.option("--port", default=8080, show_default=True, help="Port for the balancer.")
@click.option("--backend-port", default=9001, show_default=True,
              help="First of three consecutive ports for the demo backends.")
def demo(port: int, backend_port: int) -> None:
    """Start three demo backends on loopback and the balancer in front of them."""
    from .demo import run_demo
    sys.exit(run_demo(port, backend_port))


if __name__ == "__main__":
    main()
