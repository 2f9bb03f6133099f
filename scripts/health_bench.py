"""scripts/bench-health: how much a dying backend costs, l7lb against HAProxy.

In network namespaces (198.18.0.0/24, made and removed here): a client host,
the balancer host and three backends (our Python test backend). Each target
runs alone in front of the same backends, under the same load (clients on
fresh connections sending GETs), through each scenario:

- crash: one backend is killed with SIGKILL;
- black hole: nftables drops everything sent to one backend (no RST);
- slow: one backend answers 5-150 ms late with 1% packet loss, and must
  stay up (a "false down" counts against the target).

Per scenario and target: the time from the fault to the backend shown down
(polled from the admin socket / stats socket every 20 ms), the requests that
failed (non-200 or no answer), and downs of the slow backend. l7lb runs with
100 ms probes, HAProxy with ``check inter 100 fall 3 rise 2``, ``retries 2``,
``option redispatch``, ``observe layer4``, ``on-error mark-down``. With
``--defaults`` both run with their default intervals instead (l7lb 10 s,
HAProxy ``inter 2s fall 3``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import signal
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-tests"))

from load import Load  # noqa: E402
from topology import Topology  # noqa: E402

BACKENDS = ("b1", "b2", "b3")
ACCESS_LOG = False
L7LB = """balancer: {{port: 8080, bind: {lb}, workers: 2{interval}}}
backends:
{backends}
admin: {{socket: {tmp}/admin.sock}}
log: {{access: {access}}}
{health}"""
HAPROXY = """global
  nbthread 2
  stats socket {tmp}/haproxy.sock level admin
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch
frontend f
  bind {lb}:8080
  default_backend app
backend app
  balance roundrobin
  default-server check {check} observe layer4 on-error mark-down
{servers}
"""


def ask(path: Path, request: bytes, whole: bool) -> bytes:
    """One request on a Unix socket: the first line of the answer, or (``whole``)
    everything until the server closes."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(path))
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if not whole and data.endswith(b"\n"):
                break
    return data


def l7lb_down(topo: Topology, name: str) -> bool:
    rows = json.loads(ask(topo.tmp / "admin.sock", b'{"cmd": "backends"}\n', False))["result"]
    return any(r["name"] == name and r["health"] == "down" for r in rows)


def haproxy_down(topo: Topology, name: str) -> bool:
    data = ask(topo.tmp / "haproxy.sock", b"show stat\n", True)
    rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
    return any(r["svname"] == name and r["status"].startswith("DOWN") for r in rows)


def start(topo: Topology, target: str, defaults: bool):
    addresses = {b: topo.hosts[b] for b in BACKENDS}
    if target == "l7lb":
        config = L7LB.format(
            lb=topo.hosts["lb"], tmp=topo.tmp,
            interval="" if defaults else ", health_check_interval: 100ms",
            backends="\n".join(f"  - {{host: {a}, port: 8000}}" for a in addresses.values()),
            health="" if defaults else "health: {slow_start: 0s}\n",
            access="true" if ACCESS_LOG else "false")
        proc = topo.balancer("lb", config)
        names = {b: f"{a}:8000" for b, a in addresses.items()}
        return proc, lambda b: l7lb_down(topo, names[b])
    check = "inter 2s fall 3 rise 2" if defaults else "inter 100 fall 3 rise 2"
    servers = "\n".join(f"  server {b} {a}:8000" for b, a in addresses.items())
    conf = topo.tmp / "haproxy.cfg"
    conf.write_text(HAPROXY.format(lb=topo.hosts["lb"], tmp=topo.tmp, check=check,
                                   servers=servers))
    proc = topo.spawn("lb", ["haproxy", "-db", "-f", str(conf)], log_name="haproxy.log")
    topo.wait_port("lb", 8080, from_host="lb", proc=proc)
    return proc, lambda b: haproxy_down(topo, b)


def run(target: str, scenario: str, seconds: float, clients: int, defaults: bool) -> dict:
    topo = Topology(["client", "lb", *BACKENDS])
    try:
        procs = {b: topo.python_backend(b, b, delay="5-150" if scenario == "slow" and b == "b2"
                                        else "") for b in BACKENDS}
        proc, is_down = start(topo, target, defaults)
        time.sleep(2.0 if not defaults else 4.0)    # first probes answered, some history
        downs, detected, fault_at = 0, None, None
        was_down = False
        with Load(topo, clients, seconds=seconds + 5, timeout=3.0) as load:
            time.sleep(1.0)
            fault_at = time.monotonic()
            if scenario == "crash":
                procs["b2"].send_signal(signal.SIGKILL)
            elif scenario == "black hole":
                topo.lose("b2", 100)
            else:
                topo.lose("b2", 1)
            deadline = fault_at + seconds
            while time.monotonic() < deadline:
                down = is_down("b2")
                if down and not was_down:
                    downs += 1
                    if detected is None:
                        detected = time.monotonic() - fault_at
                was_down = down
                time.sleep(0.02)
        failed = sum(1 for at, status in load.results if status != 200 and at >= fault_at - 3)
        row = {"requests": len(load.results), "failed": failed}
        if scenario == "slow":
            row["false_downs"] = downs
        else:
            row["detect_s"] = None if detected is None else round(detected, 3)
        proc.send_signal(signal.SIGTERM)
        return row
    finally:
        topo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="load after the fault")
    parser.add_argument("--slow-seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--defaults", action="store_true",
                        help="default probe intervals (l7lb 10s, HAProxy inter 2s fall 3)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    scenarios = ("crash", "black hole") if args.defaults else ("crash", "black hole", "slow")
    for scenario in scenarios:
        for target in ("l7lb", "haproxy"):
            seconds = args.slow_seconds if scenario == "slow" else args.seconds
            results[f"{scenario} / {target}"] = run(target, scenario, seconds, args.clients,
                                                    args.defaults)
            print(f"bench-health: {scenario} / {target}: {results[f'{scenario} / {target}']}",
                  file=sys.stderr)
    print(f"{'scenario / target':<24}{'requests':>10}{'failed':>8}{'detect s':>10}"
          f"{'false downs':>13}")
    for label, row in results.items():
        detect = row.get("detect_s")
        print(f"{label:<24}{row['requests']:>10}{row['failed']:>8}"
              f"{'-' if detect is None else detect:>10}{row.get('false_downs', '-'):>13}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
