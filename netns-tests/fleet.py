"""A fleet in namespaces, for test_fleet_e2e.py and scripts/bench-fleet: etcd
(one member or several), balancers lb1... started with ``lbctl run`` and a
``fleet`` section, and Python test backends b1..."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from certs import CA
from conftest import lbctl

INTERVAL = 0.1
TTL = 2


class Fleet:
    """etcd, ``count`` balancers (lb1...) and ``backends`` (b1...) in namespaces."""

    def __init__(self, topology, count: int = 3, backends: int = 6, replicas: int = 2,
                 client: bool = False, etcd_members: int = 1, sharded: bool = True,
                 start: int | None = None, tls: bool = False,
                 password: str | None = None) -> None:
        self.lbs = [f"lb{i}" for i in range(1, count + 1)]
        self.backend_hosts = [f"b{i}" for i in range(1, backends + 1)]
        self.etcd_hosts = [f"etcd{i}" for i in range(1, etcd_members + 1)]
        topo = self.topo = topology([*self.etcd_hosts, *self.lbs, *self.backend_hosts]
                                    + (["client"] if client else []))
        self.replicas = replicas
        self.sharded = sharded      # False: standalone balancers, each probing everything
        self.certs = make_certs(topo.tmp, [topo.hosts[e] for e in self.etcd_hosts]) \
            if tls else None
        self.password = password    # etcd's root user's, with authentication on
        self.etcd = {e: self.start_etcd(e) for e in self.etcd_hosts}
        for e in self.etcd_hosts:
            topo.wait_port(e, 2379, from_host=e, proc=self.etcd[e])
        if password is not None:
            self.enable_auth(password)
        self.backends = {b: topo.python_backend(b, b) for b in self.backend_hosts}
        self.procs = {lb: self.start(lb) for lb in self.lbs[:start]}   # None: all

    def url(self, host: str, port: int = 2379) -> str:
        scheme = "https" if self.certs and port == 2379 else "http"
        return f"{scheme}://{self.topo.hosts[host]}:{port}"

    def etcd_api(self, path: str, body: dict, token: str | None = None) -> dict:
        """A request to etcd's JSON gateway, from etcd1's host."""
        tls = ["--cacert", self.certs["ca"], "--cert", self.certs["cert"],
               "--key", self.certs["key"]] if self.certs else []
        auth = ["-H", f"Authorization: {token}"] if token else []
        out = self.topo.run("etcd1", ["curl", "-s", *tls, *auth, "-d", json.dumps(body),
                                      self.url("etcd1") + path])
        return json.loads(out.stdout or b"{}")

    def enable_auth(self, password: str) -> None:
        self.etcd_api("/v3/auth/user/add", {"name": "root", "password": password})
        self.etcd_api("/v3/auth/user/grant", {"user": "root", "role": "root"})
        assert "error" not in self.etcd_api("/v3/auth/enable", {})

    def start_etcd(self, host: str):
        """One etcd member (its data kept across restarts); all start together."""
        cluster = ",".join(f"{e}={self.url(e, 2380)}" for e in self.etcd_hosts)
        tls = [] if self.certs is None else [
            "--cert-file", self.certs["server_cert"], "--key-file", self.certs["server_key"],
            "--trusted-ca-file", self.certs["ca"], "--client-cert-auth"]
        return self.topo.spawn(host, [
            "etcd", *tls, "--name", host, "--data-dir", str(self.topo.tmp / host),
            "--listen-client-urls", self.url(host), "--advertise-client-urls", self.url(host),
            "--listen-peer-urls", self.url(host, 2380),
            "--initial-advertise-peer-urls", self.url(host, 2380),
            "--initial-cluster", cluster], log_name=f"{host}.log")

    def config(self, lb: str) -> str:
        topo = self.topo
        backends = "\n".join(f"  - {{host: {topo.hosts[b]}, port: 8000}}"
                             for b in self.backend_hosts)
        return (f"balancer: {{port: 8080, bind: {topo.hosts[lb]}, workers: 1}}\n"
                f"backends:\n{backends}\n"
                f"admin: {{socket: {topo.tmp / lb}.sock}}\n"
                f"health: {{interval: {int(INTERVAL * 1000)}ms, slow_start: 0s}}\n"
                + (self.fleet_section(lb) if self.sharded else ""))

    def fleet_section(self, lb: str) -> str:
        return (f"fleet: {{etcd: {json.dumps([self.url(e) for e in self.etcd_hosts])}, "
                f"name: {lb}, prefix: /l7lb/test, "
                f"probe_replicas: {self.replicas}, lease_ttl: {TTL}s, timeout: 500ms"
                + (f", tls: {json.dumps(_pick(self.certs, 'ca', 'cert', 'key'))}"
                   if self.certs else "")
                + (f", user: root, password: {self.password}" if self.password else "")
                + "}\n")

    def start(self, lb: str):
        return self.topo.balancer(lb, self.config(lb), name=lb)

    def ctl(self, lb: str, *args: str):
        return lbctl(self.topo, *args, socket=f"{lb}.sock")

    def fleet(self, lb: str) -> dict:
        result = self.ctl(lb, "fleet", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def health(self, lb: str) -> dict[str, str]:
        result = self.ctl(lb, "backends", "--json")
        assert result.returncode == 0, result.stderr
        return {row["name"]: row["health"] for row in json.loads(result.stdout)}

    def address(self, backend: str) -> str:
        return f"{self.topo.hosts[backend]}:8000"

    def wait(self, check, timeout: float, what: str) -> float:
        """Seconds until ``check()`` is true."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if check():
                return time.monotonic() - started
            time.sleep(0.02)
        raise AssertionError(f"not within {timeout}s: {what}")

    def joined(self, members: list[str], timeout: float = 10) -> None:
        for lb in members:
            self.wait(lambda: self.fleet(lb)["mode"] == "ok"
                      and self.fleet(lb)["members"] == sorted(members), timeout,
                      f"{lb} sees members {members}")

    def stats(self, backend: str, path: str = "/_stats") -> dict:
        answer = self.topo.run(backend, ["curl", "-s", f"http://{self.address(backend)}{path}"])
        return json.loads(answer.stdout) if path == "/_stats" else {}


def make_certs(tmp: Path, addresses: list[str]) -> dict[str, str]:
    """A CA, etcd's server certificate (for ``addresses``) and a client one."""
    ca = CA(tmp / "certs")
    sans = ",".join(f"IP:{a}" for a in addresses)
    server_cert, server_key = ca.issue("server", "/CN=etcd", f"subjectAltName={sans}")
    cert, key = ca.issue("client", "/CN=root", "extendedKeyUsage=clientAuth")
    return {"ca": str(ca.pem), "cert": cert, "key": key,
            "server_cert": server_cert, "server_key": server_key}


def _pick(d: dict, *keys: str) -> dict:
    return {k: d[k] for k in keys}


def logged(proc, event: str) -> list[dict]:
    return [json.loads(line) for line in open(proc.log_path, errors="replace")
            if f'"event":"{event}"' in line]


def at(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def probes_per_interval(fleet: Fleet, seconds: float) -> dict[str, float]:
    for b in fleet.backend_hosts:
        fleet.stats(b, "/_reset")
    time.sleep(seconds)
    return {b: fleet.stats(b)["requests"] / (seconds / INTERVAL) for b in fleet.backend_hosts}
