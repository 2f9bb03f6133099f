"""The PROXY protocol with real processes: backends that read the header
themselves (a parser of the test backend's own), balancers in front of
balancers."""

from __future__ import annotations

import json
import time

from conftest import Client, balancer_config, lbctl, stats_when
from topology import lbctl_path


def hung_up(sock) -> bool:
    """Send a request; True if the balancer closed or reset without answering."""
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def front_balancer(topo, mode: str) -> None:
    """A second balancer on host "front", sending PROXY v2 headers to "lb"."""
    path = topo.tmp / "front.yaml"
    path.write_text(
        f"balancer: {{port: 8080, bind: {topo.hosts['front']}, workers: 1, mode: {mode}, "
        f"send_proxy: v2}}\nbackends: [{{host: {topo.hosts['lb']}, port: 8080}}]\n"
        f"admin: {{socket: {topo.tmp / 'front.sock'}}}\n")
    proc = topo.spawn("front", [lbctl_path(), "run", "-c", str(path)], log_name="front.log")
    topo.wait_port("front", 8080, from_host="front", proc=proc)


def test_groups_send_v1_or_v2_and_probes_send_it_too(topology):
    topo = topology(["client", "lb", "b1", "b2"])
    topo.python_backend("b1", "b1", proxy=True)
    topo.python_backend("b2", "b2", proxy=True)
    extra = (f"balancer: {{port: 8080, bind: {topo.hosts['lb']}, workers: 1, send_proxy: v2}}\n"
             f"clusters: {{v1: {{backends: [{{host: {topo.hosts['b2']}, port: 8000}}],"
             f" balancer: {{send_proxy: v1}}}}}}\n"
             "routes: [{match: {path: {prefix: /v1/}}, cluster: v1}]\n"
             "health: {interval: 200ms}\n")
    config = balancer_config(topo, ["b1"], extra=extra)
    config = config.replace(config.splitlines()[0] + "\n", "", 1)   # the balancer line above
    topo.balancer("lb", config)
    client = Client(topo)
    for path, name in (("/x", "b1"), ("/v1/x", "b2")):
        conn = client.connection()
        conn.request("GET", path)
        answer = json.loads(conn.getresponse().read())
        local_port = conn.sock.getsockname()[1]
        conn.close()
        assert answer["backend"] == name
        assert answer["proxy"] == f"{topo.hosts['client']}:{local_port}", answer
    deadline = time.monotonic() + 5
    while True:                       # probes pass only if they send a header too
        rows = json.loads(lbctl(topo, "backends", "--json").stdout)
        if all(r["health"] == "up" for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [r["health"] for r in rows] == ["up", "up"], rows


def test_tcp_mode_sends_the_header_before_the_clients_bytes(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1", tcp=True, proxy=True)
    config = balancer_config(topo, ["b1"], mode="tcp").replace(
        "workers: 1", "workers: 1, send_proxy: v2")
    topo.balancer("lb", config)
    sock = topo.connect("client", "lb", 8080)
    sock.sendall(b"hello")
    sock.shutdown(1)
    answer = sock.recv(4096).decode()
    port = sock.getsockname()[1]
    sock.close()
    assert answer.startswith("b1 got 5 bytes") and answer.strip().endswith(
        f"from {topo.hosts['client']}:{port}"), answer


def test_a_balancer_behind_a_balancer_takes_the_client_from_trusted_ones_only(topology):
    topo = topology(["client", "front", "lb", "b1"])
    topo.python_backend("b1", "b1")
    back = balancer_config(topo, ["b1"]).replace(
        "workers: 1", f"workers: 1, accept_proxy: true, trusted_proxies: [{topo.hosts['front']}/32]")
    topo.balancer("lb", back)
    front_balancer(topo, "http")
    response, body = Client(topo, target="front").request("GET", "/via-front")
    sent = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert response.status == 200
    # The back balancer names the client the PROXY header gave, not the front
    # balancer (which also added the client itself, as every hop does).
    hops = sent["x-forwarded-for"].split(", ")
    assert hops[-1] == topo.hosts["client"] and topo.hosts["front"] not in hops, sent
    direct = topo.connect("client", "lb", 8080)                     # not a trusted proxy
    assert hung_up(direct)
    bare = topo.connect("front", "lb", 8080)                       # trusted, but no header
    assert hung_up(bare)
    def refused(stats: dict) -> int:
        return list(stats["listeners"].values())[0]["refused"]
    assert refused(stats_when(topo, lambda s: refused(s) >= 2)) >= 2


def test_tcp_mode_behind_a_balancer_passes_the_client_and_its_first_bytes_on(topology):
    topo = topology(["client", "front", "lb", "b1"])
    topo.python_backend("b1", "b1", tcp=True, proxy=True)
    back = balancer_config(topo, ["b1"], mode="tcp").replace(
        "workers: 1", f"workers: 1, send_proxy: v1, accept_proxy: true, "
                      f"trusted_proxies: ['{topo.hosts['front']}']")
    topo.balancer("lb", back)
    front_balancer(topo, "tcp")
    sock = topo.connect("client", "front", 8080)
    sock.sendall(b"x" * 100_000)
    sock.shutdown(1)
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    port = sock.getsockname()[1]
    sock.close()
    assert answer.decode().startswith("b1 got 100000 bytes"), answer
    assert answer.decode().strip().endswith(f"from {topo.hosts['client']}:{port}"), answer
    assert hung_up(topo.connect("client", "lb", 8080))          # untrusted: refused
