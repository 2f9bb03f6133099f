"""Kernel TLS on the listener (balancer.tls.ktls), end to end: the real
balancer, nginx and our Python backend, clients speaking TLS with Python's
ssl. Where the kernel has the tls ULP (the lab VM: scripts/test-vm), the
kernel must carry the sessions; where it has none (this project's host), the
fallback to user-space TLS must be counted and said."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import time

import pytest

from certs import CA
from conftest import lbctl
from topology import lbctl_path

TCP_ULP = 31
BIG = int(os.environ.get("L7LB_KTLS_BYTES", 1 << 30))   # the byte-exact transfers (test-vm: TCG)


def kernel_has_tls() -> bool:
    probe = socket.socket()
    try:
        probe.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
    except OSError as exc:
        return exc.errno == 107                           # ENOTCONN: the ULP is there
    finally:
        probe.close()
    return True


needs_ktls = pytest.mark.skipif(not kernel_has_tls(), reason="this kernel has no tls ULP "
                                "(the lab VM has: scripts/test-vm)")
needs_no_ktls = pytest.mark.skipif(kernel_has_tls(), reason="this kernel has the tls ULP")


def tls_stat(topo, host: str) -> dict[str, int]:
    """The kernel's TLS counters of the host's namespace (they are per namespace)."""
    text = topo.run(host, ["cat", "/proc/net/tls_stat"], check=True).stdout.decode()
    return {name: int(value) for name, value in (line.split() for line in text.splitlines())}


class Site:
    """A balancer on "lb" with one certificate, nginx (files) and our Python
    backend behind it."""

    def __init__(self, topology, ktls: str, workers: int = 1, extra: str = "") -> None:
        topo = self.topo = topology(["client", "lb", "b1"])
        self.ca = CA(topo.tmp / "pki")
        cert, key = self.ca.issue("a", "/CN=a.test", "subjectAltName=DNS:a.test")
        topo.nginx_backend("b1", "nginx", port=8001)
        topo.python_backend("b1", "py", port=8000)
        self.config = (
            f"balancer: {{port: 8443, bind: {topo.hosts['lb']}, workers: {workers}, "
            f"tls: {{certificates: [{{cert: {cert}, key: {key}}}], ktls: {ktls}{extra}}}}}\n"
            f"backends: [{{host: {topo.hosts['b1']}, port: 8000}}]\n"
            "clusters:\n"
            f"  files: {{backends: [{{host: {topo.hosts['b1']}, port: 8001}}]}}\n"
            "routes: [{name: files, match: {path: {prefix: /files/}}, cluster: files}]\n"
            f"admin: {{socket: {topo.tmp / 'admin.sock'}}}\n"
            "timeouts: {header: 2s, request: 120s, idle: 120s}\n"
            # The lab VM under TCG stalls for seconds while a big transfer runs:
            # such a stall must not take the backend down between the two transfers.
            "health: {timeout: 10s, fall: 10, acceptable_pause: 10s}\n")

    def start(self):
        self.lb = self.topo.balancer("lb", self.config, port=8443)
        return self

    def context(self, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.pem))
        if version is not None:
            context.minimum_version = context.maximum_version = version
        return context

    def connect(self, version: ssl.TLSVersion | None = None,
                session: ssl.SSLSession | None = None,
                context: ssl.SSLContext | None = None) -> ssl.SSLSocket:
        context = context or self.context(version)
        raw = self.topo.connect("client", "lb", 8443, timeout=60)
        return context.wrap_socket(raw, server_hostname="a.test", session=session)


def read_response(sock: ssl.SSLSocket, sink=None) -> tuple[bytes, int]:
    """The head, and the body's length (its bytes go to ``sink``), to the
    end of the connection: it must end with close_notify (an EOF without it
    raises SSLEOFError in Python's ssl)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    size = len(body)
    if sink is not None:
        sink(body)
    while chunk := sock.recv(1 << 20):
        size += len(chunk)
        if sink is not None:
            sink(chunk)
    return head, size


@needs_ktls
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_the_kernel_carries_the_session_both_ways_for_tls_12_and_13(topology, version):
    site = Site(topology, "on").start()
    before = tls_stat(site.topo, "lb")
    sock = site.connect(version)
    assert sock.version() == version.name.replace("v1_", "v1.")
    sock.sendall(b"POST /who HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
                 b"Connection: close\r\n\r\nhello")
    head, _ = read_response(sock)                   # and a clean close_notify at the end
    assert head.startswith(b"HTTP/1.1 200"), head
    after = tls_stat(site.topo, "lb")
    assert after["TlsTxSw"] > before["TlsTxSw"] and after["TlsRxSw"] > before["TlsRxSw"], after
    time.sleep(0.6)                                 # a worker report
    shown = json.loads(lbctl(site.topo, "tls", "--json").stdout)
    assert next(iter(shown["listeners"].values()))["kernel_tls"] == {"kernel": 1}


@needs_ktls
def test_a_gigabyte_each_way_is_byte_exact_and_spliced_into_the_kernel_tls_socket(topology):
    site = Site(topology, "on")
    pattern = hashlib.sha256(b"l7lb").digest() * 32768                 # 1 MiB
    path = site.topo.nginx_files("nginx") / "big"
    with open(path, "wb") as f:
        for _ in range(BIG // len(pattern)):
            f.write(pattern)
    expected = hashlib.sha256()
    for _ in range(BIG // len(pattern)):
        expected.update(pattern)
    site.start()
    got = hashlib.sha256()
    sock = site.connect()
    sock.sendall(b"GET /files/big HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    head, size = read_response(sock, got.update)
    assert head.startswith(b"HTTP/1.1 200") and size == BIG
    assert got.hexdigest() == expected.hexdigest()
    sock = site.connect()
    sock.sendall(b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n" % BIG)
    for _ in range(BIG // len(pattern)):
        sock.sendall(pattern)
    body = []
    head, _ = read_response(sock, body.append)
    answer = json.loads(b"".join(body))
    assert answer["body_bytes"] == BIG and answer["body_sha256"] == expected.hexdigest()


@needs_ktls
def test_sessions_resume_across_workers_with_the_kernel_carrying_them(topology):
    site = Site(topology, "on", workers=2).start()
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = site.context(version)
        first = site.connect(context=context)
        first.sendall(b"GET /who HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        read_response(first)              # TLS 1.3 tickets came under the kernel's first records
        session = first.session
        assert session is not None and session.has_ticket
        for _ in range(8):                # SO_REUSEPORT spreads them over both workers
            again = site.connect(session=session, context=context)
            assert again.session_reused, version
            again.sendall(b"GET /who HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            head, _ = read_response(again)
            assert head.startswith(b"HTTP/1.1 200")
    time.sleep(0.6)
    shown = json.loads(lbctl(site.topo, "tls", "--json").stdout)
    listener = next(iter(shown["listeners"].values()))
    assert listener["kernel_tls"] == {"kernel": 18} and listener["resumed"] == 16, listener


@needs_ktls
def test_keep_alive_requests_and_a_bad_handshake_beside_them(topology):
    site = Site(topology, "auto").start()
    sock = site.connect()
    garbage = site.topo.connect("client", "lb", 8443, timeout=10)
    garbage.sendall(b"\x16\x03\x01\x00\x05hello")         # a ClientHello that is not one
    for i in range(20):
        sock.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % (1000 * i))
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 1000 * i:
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200")
    assert garbage.recv(100)[:1] == b"\x15"               # OpenSSL's alert, then the close
    assert garbage.recv(100) == b""


@needs_no_ktls
def test_auto_falls_back_to_user_space_tls_and_lbctl_tls_says_why(topology):
    site = Site(topology, "auto").start()
    for _ in range(3):
        sock = site.connect()
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        head, _ = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200")
    time.sleep(0.6)
    shown = json.loads(lbctl(site.topo, "tls", "--json").stdout)
    counts = next(iter(shown["listeners"].values()))["kernel_tls"]
    assert counts == {"the kernel has no tls ULP (ENOENT)": 3}, counts
    assert "the kernel has no tls ULP (ENOENT)" in lbctl(site.topo, "tls").stdout
    assert "kernel TLS unavailable" in site.topo.log(site.lb)


@needs_no_ktls
def test_on_refuses_to_start_where_the_kernel_cannot(topology):
    site = Site(topology, "on")
    path = site.topo.tmp / "on.yaml"
    path.write_text(site.config)
    run = site.topo.run("lb", [lbctl_path(), "run", "-c", str(path)], timeout=30)
    assert run.returncode != 0
    assert b"balancer.tls.ktls: on, but the kernel has no tls ULP (ENOENT); set auto or off" \
        in run.stderr + run.stdout, run
