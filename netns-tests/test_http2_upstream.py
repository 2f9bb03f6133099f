"""HTTP/2 to backends, end to end with nginx speaking h2c (``listen ...
http2``, at most 4 streams per connection): HTTP/1.1 and HTTP/2 clients
through the real balancer, a 100 MB download through one backend stream,
and the backend's stream limit honoured by opening more connections.
gRPC over h2 is test_grpc_e2e.py's."""

from __future__ import annotations

import hashlib
import random
import re

import pytest

from conftest import lbctl, stats_when
from topology import Topology

BIG = 100 * 1024 * 1024
STREAMS = 4                   # nginx's http2_max_concurrent_streams here


@pytest.fixture(scope="module")
def site():
    topo = Topology(["client", "lb", "n1", "n2"])
    try:
        big = random.Random(3).randbytes(BIG)
        topo.big_sha = hashlib.sha256(big).hexdigest()
        for name in ("n1", "n2"):
            topo.nginx_backend(name, name, listen="http2",
                               server=f"http2_max_concurrent_streams {STREAMS};")
            (topo.nginx_files(name) / "big").write_bytes(big)
            (topo.nginx_files(name) / "256k").write_bytes(big[:256 * 1024])
        del big
        listed = ", ".join(f"{{host: {topo.hosts[n]}, port: 8000}}" for n in ("n1", "n2"))
        topo.lb = topo.balancer("lb", (
            f"balancer: {{port: 8080, bind: {topo.hosts['lb']}, workers: 1, protocol: h2c, "
            "http2: {cleartext: true}}\n"
            f"backends: [{listed}]\n"
            f"admin: {{socket: {topo.tmp / 'admin.sock'}}}\n"))
        yield topo
    finally:
        topo.close()


def curl(topo: Topology, *args: str, timeout: float = 60):
    return topo.run("client", ["curl", "-sS", "--max-time", str(timeout), *args],
                    timeout=timeout + 5)


def url(topo: Topology, path: str) -> str:
    return f"http://{topo.hosts['lb']}:8080{path}"


@pytest.mark.parametrize("version", ["--http1.1", "--http2-prior-knowledge"])
def test_http11_and_h2_clients_reach_h2c_backends_in_turn(site, version):
    seen = []
    for _ in range(4):
        out = curl(site, version, "-D", "-", url(site, "/hello"))
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        status = head.split(b"\r\n")[0].strip()
        assert status in (b"HTTP/1.1 200 OK", b"HTTP/2 200"), out
        backend = re.search(rb"(?im)^x-backend: (n\d)", head).group(1).decode()
        assert body == f"nginx {backend}\n".encode()
        seen.append(backend)
    assert sorted(seen) == ["n1", "n1", "n2", "n2"], seen


@pytest.mark.parametrize("version", ["--http1.1", "--http2-prior-knowledge"])
def test_a_100mb_download_through_one_backend_stream_arrives_whole(site, version):
    out = site.run("client", ["sh", "-c", f"curl -sS --max-time 120 {version} "
                              f"{url(site, '/files/big')} | sha256sum"], timeout=130)
    assert out.stdout.split()[0].decode() == site.big_sha, out


def test_the_backends_stream_limit_is_honoured_with_more_connections(site):
    out = site.run("client", ["h2load", "-n", "400", "-c", "1", "-m", "40",
                              url(site, "/files/256k")], timeout=120)
    assert b"400 succeeded" in out.stdout, out.stdout.decode()[-1500:]
    stats = stats_when(site, lambda s: sum(b["http_2xx"] for b in s["backends"].values()) >= 400)
    rows = stats["backends"].values()
    # 40 streams at once, 4 per backend connection: more than one each, none refused.
    assert all(b["connections_opened"] >= 2 for b in rows), stats["backends"]
    assert sum(b["retries"] + b["http_5xx"] for b in rows) == 0, stats["backends"]


def test_a_reload_that_changes_a_groups_protocol_says_it_needs_a_restart(topology):
    topo = topology(["client", "lb", "n1"])
    topo.nginx_backend("n1", "n1", listen="http2")
    group = f"clusters: {{api: {{protocol: PROTO, backends: [{{host: {topo.hosts['n1']}, port: 8000}}]}}}}\n"
    text = (f"balancer: {{port: 8080, bind: {topo.hosts['lb']}, workers: 1}}\n"
            f"backends: [{{host: {topo.hosts['n1']}, port: 8000}}]\n"
            "routes: [{match: {path: {prefix: /api/}}, cluster: api}]\n"
            f"admin: {{socket: {topo.tmp / 'admin.sock'}}}\n")
    topo.balancer("lb", text + group.replace("PROTO", "h2c"))
    assert curl(topo, "-o", "/dev/null", "-w", "%{http_code}", url(topo, "/api/x")).stdout == b"200"
    changed = topo.tmp / "changed.yaml"
    changed.write_text(text + group.replace("PROTO", "http1"))
    out = lbctl(topo, "reload", "-c", str(changed))
    assert out.returncode == 0 and "not applied (restart needed): clusters" in out.stdout, out
    # Still h2c to the group, as the running balancer was started.
    assert curl(topo, "-o", "/dev/null", "-w", "%{http_code}", url(topo, "/api/x")).stdout == b"200"
