"""The lbctl command line: run, check and demo, and the management commands
that talk to a running balancer over its admin socket (docs/admin-protocol.md).

Exit codes: 0 success, 1 the balancer refused (its message is printed), 2 a
usage or configuration error, 3 the balancer cannot be reached."""

from __future__ import annotations

import json
import os
import sys

import click
from .client import CommandFailed, call
from .build import build
from .fleet import show as show_fleet
from .tables import clock, console, table

from dataplane.config import ConfigError, load, warnings

EXIT_CONFIG = 2


def _load_or_exit(path: str):
    try:
        return load(path)
    except ConfigError as exc:
        click.echo(f"lbctl: configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              help="Show the version (and the git commit it runs from) and exit.",
              callback=lambda ctx, _, on: on and (click.echo(f"lbctl {build()}"), ctx.exit()))
@click.option("--socket", "socket_path", default="/run/l7lb/admin.sock", show_default=True,
              envvar="L7LB_SOCKET", help="Admin socket of a running balancer ($L7LB_SOCKET).")
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
    for warning in warnings(config):
        click.echo(f"{path}: warning: {warning}", err=True)
    groups = sum(len(config.group(name).backends) for name in config.group_names())
    click.echo(f"{path}: configuration OK ({groups} backends in {len(config.group_names())} "
               f"group(s), {len(config.routes)} routes, mode {config.balancer.mode}, "
               f"port {config.balancer.port})")


@main.command()
@click.option("--port", default=8080, show_default=True, help="Port for the balancer.")
@click.option("--backend-port", default=9001, show_default=True,
              help="First of three consecutive ports for the demo backends.")
def demo(port: int, backend_port: int) -> None:
    """Start three demo backends on loopback and the balancer in front of them."""
    from .demo import run_demo
    sys.exit(run_demo(port, backend_port))


def _admin(ctx: click.Context, cmd: str, args: dict | None = None, wait: float = 10.0):
    try:
        return call(ctx.obj["socket"], cmd, args, timeout=wait)
    except CommandFailed as exc:
        click.echo(f"lbctl: {exc}", err=True)
        sys.exit(exc.exit_code)


json_flag = click.option("--json", "as_json", is_flag=True, help="Print the raw result.")


def _printed_raw(result: object, as_json: bool) -> bool:
    """With --json the result is printed as the balancer sent it."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
    return as_json


def _table(columns: list[str], rows: list[list]) -> None:
    out = table(columns)
    for row in rows:
        out.add_row(*("-" if cell is None else str(cell) for cell in row))
    console().print(out)


@main.command()
@json_flag
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Version, uptime, mode, workers and listeners of the running balancer."""
    result = _admin(ctx, "status")
    if _printed_raw(result, as_json):
        return
    click.echo(f"l7lb {result['version']}, up {result['uptime_s']}s, mode {result['mode']}, "
               f"{result['algorithm']}, listening on {', '.join(result['listeners'])}, "
               f"state version {result['state_version']}, fleet {result['fleet']}")
    _table(["slot", "pid", "state version"],
           [[w["slot"], w["pid"], w["state_version"]] for w in result["workers"]])


cluster_option = click.option("--cluster", help="The backend's group (default: default).")


@main.command()
@json_flag
@click.pass_context
def routes(ctx: click.Context, as_json: bool) -> None:
    """The routes in the order they are tried, with the requests each took."""
    result = _admin(ctx, "routes")
    if _printed_raw(result, as_json):
        return
    _table(["#", "name", "match", "action", "requests"],
           [[r["index"], r["name"], json.dumps(r["match"]), r["action"], r["requests"]]
            for r in result])


def _named(name: str | None, cluster: str | None) -> dict:
    return {"name": name, "cluster": cluster} if name else {}


BACKEND_COLUMNS = ["name", "cluster", "state", "health", "weight", "active", "idle", "waiting", "requests",
                   "errors", "p50_ms", "p99_ms", "phi", "breaker", "cc"]


@main.command()
@json_flag
@click.pass_context
def backends(ctx: click.Context, as_json: bool) -> None:
    """One row per backend."""
    result = _admin(ctx, "backends")
    if _printed_raw(result, as_json):
        return
    _table(BACKEND_COLUMNS, [[row[c] for c in BACKEND_COLUMNS] for row in result])


@main.command()
@click.argument("name", required=False)
@json_flag
@cluster_option
@click.pass_context
def health(ctx: click.Context, name: str | None, cluster: str | None, as_json: bool) -> None:
    """Health per backend: state, phi, the detector's window, last probes and transitions."""
    result = _admin(ctx, "health", _named(name, cluster))
    if _printed_raw(result, as_json):
        return
    _table(["name", "health", "phi", "samples", "mean_ms", "std_ms", "weight %", "transitions"],
           [[r["name"], r["health"], r["phi"], r["window"]["samples"], r["window"]["mean_ms"],
             r["window"]["std_ms"], r["weight_percent"], r["transitions_total"]]
            for r in result])
    if name is None:
        return
    for row in result:
        if row["fleet_down"]:
            click.echo(f"down by the fleet: {row['fleet_down']} (own evidence: "
                       f"{row['own_health']})")
        if not row["probed_here"]:
            click.echo("not probed here: other members of the fleet probe it")
        _table(["probe at", "ok", "ms", "detail"],
               [[clock(p["at"]), p["ok"], p["ms"], p["detail"]] for p in row["probes"][-10:]])
        _table(["changed at", "from", "to", "phi", "reason"],
               [[clock(t["at"]), t["from"], t["to"], t["phi"], t["reason"]]
                for t in row["transitions"][-10:]])


@main.command()
@click.argument("name", required=False)
@json_flag
@cluster_option
@click.pass_context
def breaker(ctx: click.Context, name: str | None, cluster: str | None, as_json: bool) -> None:
    """Circuit breakers per backend: state, the window's counts, trips; with NAME
    also the half-open trials, the limits and the last transitions."""
    from .breaker import show
    result = _admin(ctx, "breaker", _named(name, cluster))
    if not _printed_raw(result, as_json):
        show(result, name is not None, _table)


@main.group()
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
    result = _admin(ctx, "backend.add", {"name": name, "weight": weight, "cc": cc,
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
    _admin(ctx, "backend.remove", {"name": name, "force": force, "timeout": timeout,
                                   "cluster": cluster}, wait=timeout + 10)
    click.echo(f"{name}: removed")


@main.command()
@json_flag
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Counters per backend and per listener."""
    result = _admin(ctx, "stats")
    if _printed_raw(result, as_json):
        return
    columns = ["sessions_current", "sessions_max", "sessions_total", "bytes_in", "bytes_out",
               "connect_errors", "response_errors", "retries", "http_2xx", "http_4xx",
               "http_5xx", "queue_current"]
    _table(["backend", *columns], [[name, *(row[c] for c in columns)]
                                   for name, row in result["backends"].items()])
    listener_columns = ["sessions_current", "sessions_max", "sessions_total",
                        "request_errors", "bytes_in", "bytes_out"]
    _table(["listener", *listener_columns], [[name, *(row[c] for c in listener_columns)]
                                             for name, row in result["listeners"].items()])


@main.command()
@click.option("--interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True)
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.pass_context
def top(ctx: click.Context, interval: float, once: bool) -> None:
    """A live per-backend view: requests/s, errors, latency, state (q quits)."""
    from .top import run as run_top
    run_top(lambda cmd: _admin(ctx, cmd), interval, once)


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
    result = _admin(ctx, "backend.set", {**args, "cluster": cluster})
    click.echo(f"{result['name']}: weight {result['weight']}, state {result['state']}, "
               f"breaker {result['breaker']}, cc {result['cc'] or 'default'} "
               f"(in effect: {result['cc_in_effect'] or 'default'})")


@main.group(invoke_without_command=True)
@json_flag
@click.pass_context
def cc(ctx: click.Context, as_json: bool) -> None:
    """Congestion control per backend: algorithm, cwnd, srtt, retransmits, pacing."""
    if ctx.invoked_subcommand is None:
        from .cc import show
        result = _admin(ctx, "cc")
        if not _printed_raw(result, as_json):
            show(result, _table)


@cc.command("set")
@click.argument("algorithm")
@click.argument("key")
@click.argument("value", type=int)
@click.pass_context
def cc_set(ctx: click.Context, algorithm: str, key: str, value: int) -> None:
    """Change tunable KEY of our BPF ALGORITHM (lb_aimd, lb_delay) at once."""
    result = _admin(ctx, "cc.set", {"algorithm": algorithm, "key": key, "value": value})
    values = " ".join(f"{k}={v}" for k, v in result["tunables"].items())
    click.echo(f"{result['algorithm']}: {values}")


@main.command()
@click.option("--seconds", type=click.FloatRange(0.1, 86400), default=3600, show_default=True,
              help="Stop after this long.")
@click.option("--count", type=click.IntRange(0), default=0, help="Stop after N events (0: no limit).")
@click.option("--interval", "interval_ms", type=click.FloatRange(0, 10000), default=100,
              show_default=True, help="Milliseconds between cwnd/srtt samples per connection.")
@click.option("--backend", "only", multiple=True, help="Trace only this backend (repeatable).")
@json_flag
@click.pass_context
def trace(ctx: click.Context, seconds: float, count: int, interval_ms: float,
          only: tuple[str, ...], as_json: bool) -> None:
    """Live TCP events per backend: cwnd and srtt samples, retransmits (needs bcc, root)."""
    from .trace import TraceUnavailable, trace as run_trace
    names = [row["name"] for row in _admin(ctx, "backends")]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise click.BadParameter(f"no backend {', '.join(unknown)}", param_hint="--backend")
        names = list(only)

    def emit(event: dict) -> None:
        if as_json:
            click.echo(json.dumps(event))
        else:
            t, backend, port, kind = (event.pop(k) for k in ("t", "backend", "local_port", "event"))
            fields = " ".join(f"{k}={v}" for k, v in event.items())
            click.echo(f"{t:10.3f} {backend:<22} :{port:<5} {kind} {fields}")

    def ready(addresses: int) -> None:
        click.echo(f"tracing {addresses} backend addresses (Ctrl-C stops)", err=True)

    try:
        seen = run_trace(names, emit, seconds, count, interval_ms, ready)
    except TraceUnavailable as exc:
        click.echo(f"lbctl: trace unavailable: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        return
    click.echo(f"{seen} events", err=True)


@main.command()
@click.option("-c", "--config", "path", type=click.Path(dir_okay=False),
              help="File to load instead of the one the balancer was started with.")
@click.pass_context
def reload(ctx: click.Context, path: str | None) -> None:
    """Validate the configuration file, then apply it to every worker."""
    args = {"path": os.path.abspath(path)} if path else {}
    result = _admin(ctx, "reload", args)
    click.echo(f"reloaded: state version {result['version']}, {result['backends']} backends")
    kept = [s for s in result["not_applied"] if s != "backends"]
    if kept:
        click.echo(f"not applied (restart needed): {', '.join(kept)}")
    if "backends" in result["not_applied"]:
        click.echo("backends not applied: this balancer is in a fleet, whose backend set is "
                   "in etcd (change it with lbctl backend)")


@main.command()
@json_flag
@click.pass_context
def tls(ctx: click.Context, as_json: bool) -> None:
    """The listener's certificates (names, issuer, expiry) and TLS handshakes."""
    result = _admin(ctx, "tls")
    if _printed_raw(result, as_json):
        return
    _table(["file", "names", "issuer", "expires", "days left"],
           [[c["file"], ", ".join(c["names"]), c["issuer"], c["not_after"][:19],
             f"{c['days_left']}" + (" EXPIRING" if c["expiring"] else "")]
            for c in result["certificates"]])
    _table(["listener", "handshakes", "resumed"],
           [[name, row["handshakes"], row["resumed"]] for name, row in result["listeners"].items()])


@main.command()
@json_flag
@click.pass_context
def fleet(ctx: click.Context, as_json: bool) -> None:
    """The fleet: members, who probes which backend, each member's view of each."""
    result = _admin(ctx, "fleet")
    if not _printed_raw(result, as_json):
        show_fleet(result, _table, click.echo)


@main.group("config")
def config_group() -> None:
    """The running configuration."""


@config_group.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the running configuration (JSON)."""
    click.echo(json.dumps(_admin(ctx, "config.show"), indent=2))


if __name__ == "__main__":
    main()
