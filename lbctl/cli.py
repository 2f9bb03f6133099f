"""The lbctl command line: run, check and demo, and the management commands
that talk to a running balancer over its admin socket (docs/admin-protocol.md).

Exit codes: 0 success, 1 the balancer refused (its message is printed), 2 a
usage or configuration error, 3 the balancer cannot be reached."""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any

import click
from .admin import ask, cluster_option, json_flag, named, print_table, printed_raw
from .build import build
from .changes import backend, reload
from .fleet import show as show_fleet
from .tables import clock

from dataplane.config import Config, ConfigError, load, warnings

EXIT_CONFIG = 2


UPGRADE_WAIT = 35.0     # the balancer's own limit (30 s) and a margin


def _load_or_exit(path: str) -> Config:
    try:
        return load(path)
    except ConfigError as exc:
        click.echo(f"lbctl: configuration error: {exc}", err=True)
        _tell_upgrade(f"configuration error: {exc}")
        sys.exit(EXIT_CONFIG)


def _tell_upgrade(reason: str) -> None:
    """Started by ``lbctl upgrade``: why this process will not serve, for the
    process that started it (dataplane/control/takeover.py says the rest)."""
    fd = os.environ.get("L7LB_UPGRADE_FD", "")
    if fd.isdigit():
        try:
            os.write(int(fd), reason.encode()[:4000])
        except OSError:
            pass


def _version(ctx: click.Context, _: click.Parameter, on: bool) -> None:
    if on:
        click.echo(f"lbctl {build()}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              help="Show the version (and the git commit it runs from) and exit.",
              callback=_version)
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
    """Run the balancer in the foreground until SIGTERM or Ctrl-C. It takes
    over the listeners of workers whose control process died (docs/process.md)."""
    config = _load_or_exit(path)
    try:
        from dataplane.serve import serve
    except Exception as exc:
        _tell_upgrade(f"the new code does not import: {exc!r}")
        raise
    sys.exit(serve(config, path))


@main.command()
@click.option("-c", "--config", "path", type=click.Path(dir_okay=False),
              help="The new process's configuration file (default: the running one's).")
@json_flag
@click.pass_context
def upgrade(ctx: click.Context, path: str | None, as_json: bool) -> None:
    """Replace the running balancer with a new process from the code installed
    now, handing over its listeners and state; exit 0 once the new one serves
    (the old one then drains), 1 with the reason if it cannot."""
    args = {"config": os.path.abspath(path)} if path else {}
    result = ask(ctx, "upgrade", args, wait=UPGRADE_WAIT)
    if printed_raw(result, as_json):
        return
    click.echo(f"upgraded: process {result['pid']} serves ({result['config']}); "
               f"process {result['previous_pid']} drains and exits")


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
@click.option("--metrics-port", default=9100, show_default=True,
              help="Port for the metrics and the dashboard.")
def demo(port: int, backend_port: int, metrics_port: int) -> None:
    """Start three demo backends on loopback and the balancer in front of them."""
    from .demo import run_demo
    sys.exit(run_demo(port, backend_port, metrics_port))


@main.command()
@json_flag
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Version, uptime, mode, workers and listeners of the running balancer."""
    result = ask(ctx, "status")
    if printed_raw(result, as_json):
        return
    started = datetime.datetime.fromtimestamp(result["started"], datetime.timezone.utc)
    click.echo(f"l7lb {result['version']}, pid {result['pid']}, started "
               f"{started.isoformat(timespec='seconds')}, up {result['uptime_s']}s, mode {result['mode']}, "
               f"{result['algorithm']}, listening on {', '.join(result['listeners'])}, "
               f"state version {result['state_version']}, fleet {result['fleet']}")
    if result["draining"]:
        click.echo(f"draining: process {', '.join(map(str, result['draining']))} "
                   "(taken over, finishing its requests)")
    if result["succeeded_by"]:
        click.echo(f"retiring: process {result['succeeded_by']} has taken over")
    print_table(["slot", "pid", "state", "version"],
                [[w["slot"], w["pid"] or "-", w["state"], w["state_version"]]
                 for w in result["workers"]])


@main.command()
@json_flag
@click.pass_context
def routes(ctx: click.Context, as_json: bool) -> None:
    """The routes in the order they are tried, with the requests each took."""
    result = ask(ctx, "routes")
    if printed_raw(result, as_json):
        return
    print_table(["#", "name", "match", "action", "requests"],
                [[r["index"], r["name"], json.dumps(r["match"]), r["action"], r["requests"]]
                 for r in result])


BACKEND_COLUMNS = ["name", "cluster", "state", "health", "weight", "active", "idle", "streams",
                   "waiting", "requests", "errors", "p50_ms", "p99_ms", "phi", "breaker", "cc"]


@main.command()
@json_flag
@click.pass_context
def backends(ctx: click.Context, as_json: bool) -> None:
    """One row per backend."""
    result = ask(ctx, "backends")
    if printed_raw(result, as_json):
        return
    print_table(BACKEND_COLUMNS, [[_streams(row) if c == "streams" else row[c]
                                   for c in BACKEND_COLUMNS] for row in result])


def _streams(row: dict[str, Any]) -> str:
    """HTTP/2 requests under way, and per connection in use: ``12 (6.0/conn)``."""
    streams, active = row["streams"], row["active"]
    return f"{streams} ({streams / active:.1f}/conn)" if streams and active else str(streams)


@main.command()
@click.argument("name", required=False)
@json_flag
@cluster_option
@click.pass_context
def health(ctx: click.Context, name: str | None, cluster: str | None, as_json: bool) -> None:
    """Health per backend: state, phi, the detector's window, last probes and transitions."""
    result = ask(ctx, "health", named(name, cluster))
    if printed_raw(result, as_json):
        return
    print_table(["name", "health", "phi", "samples", "mean_ms", "std_ms", "weight %",
                 "transitions"],
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
        print_table(["probe at", "ok", "ms", "detail"],
                    [[clock(p["at"]), p["ok"], p["ms"], p["detail"]] for p in row["probes"][-10:]])
        print_table(["changed at", "from", "to", "phi", "reason"],
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
    result = ask(ctx, "breaker", named(name, cluster))
    if not printed_raw(result, as_json):
        show(result, name is not None, print_table)


@main.command()
@json_flag
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Counters per backend and per listener."""
    result = ask(ctx, "stats")
    if printed_raw(result, as_json):
        return
    columns = ["sessions_current", "sessions_max", "sessions_total", "bytes_in", "bytes_out",
               "connect_errors", "response_errors", "retries", "http_2xx", "http_4xx",
               "http_5xx", "queue_current"]
    print_table(["backend", *columns], [[name, *(row[c] for c in columns)]
                                        for name, row in result["backends"].items()])
    listener_columns = ["sessions_current", "sessions_max", "sessions_total",
                        "request_errors", "refused", "limited_connections", "limited_requests",
                        "bytes_in", "bytes_out"]
    print_table(["listener", *listener_columns], [[name, *(row[c] for c in listener_columns)]
                                                  for name, row in result["listeners"].items()])


@main.command()
@click.option("--interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True)
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.pass_context
def top(ctx: click.Context, interval: float, once: bool) -> None:
    """A live per-backend view: requests/s, errors, latency, state (q quits)."""
    from .top import run as run_top
    run_top(lambda cmd: ask(ctx, cmd), interval, once)


@main.group(invoke_without_command=True)
@json_flag
@click.pass_context
def cc(ctx: click.Context, as_json: bool) -> None:
    """Congestion control per backend: algorithm, cwnd, srtt, retransmits, pacing."""
    if ctx.invoked_subcommand is None:
        from .cc import show
        result = ask(ctx, "cc")
        if not printed_raw(result, as_json):
            show(result, print_table)


@cc.command("set")
@click.argument("algorithm")
@click.argument("key")
@click.argument("value", type=int)
@click.pass_context
def cc_set(ctx: click.Context, algorithm: str, key: str, value: int) -> None:
    """Change tunable KEY of our BPF ALGORITHM (lb_aimd, lb_delay) at once."""
    result = ask(ctx, "cc.set", {"algorithm": algorithm, "key": key, "value": value})
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
    names = [row["name"] for row in ask(ctx, "backends")]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise click.BadParameter(f"no backend {', '.join(unknown)}", param_hint="--backend")
        names = list(only)

    def emit(event: dict[str, Any]) -> None:
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
@json_flag
@click.pass_context
def tls(ctx: click.Context, as_json: bool) -> None:
    """The listener's certificates (names, issuer, expiry), TLS handshakes, and which
    connections the kernel encrypts (tls.ktls) or why not."""
    result = ask(ctx, "tls")
    if printed_raw(result, as_json):
        return
    print_table(["file", "names", "issuer", "expires", "days left"],
                [[c["file"], ", ".join(c["names"]), c["issuer"], c["not_after"][:19],
                  f"{c['days_left']}" + (" EXPIRING" if c["expiring"] else "")]
                 for c in result["certificates"]])
    print_table(["listener", "handshakes", "resumed"],
                [[name, row["handshakes"], row["resumed"]]
                 for name, row in result["listeners"].items()])
    print_table(["listener", "kernel tls", "connections"],
                [[name, "yes" if how == "kernel" else f"no: {how}", count]
                 for name, row in result["listeners"].items()
                 for how, count in sorted(row.get("kernel_tls", {}).items())])


@main.command()
@json_flag
@click.pass_context
def fleet(ctx: click.Context, as_json: bool) -> None:
    """The fleet: members, who probes which backend, each member's view of each."""
    result = ask(ctx, "fleet")
    if not printed_raw(result, as_json):
        show_fleet(result, print_table, click.echo)


@main.group("config")
def config_group() -> None:
    """The running configuration."""


@config_group.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the running configuration (JSON)."""
    click.echo(json.dumps(ask(ctx, "config.show"), indent=2))


main.add_command(backend)
main.add_command(reload)


if __name__ == "__main__":
    main()
