"""HTTPS on the listener, end to end: certificates made here with openssl,
the real balancer (lbctl run) with balancer.tls, clients speaking TLS from the
client host (Python's ssl, openssl s_client, curl)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import threading
import time

import pytest

from certs import CA
from conftest import lbctl, read_until_closed, websocket_echo


NAMES = ("a.test", "x.w.test", "other.test")


class TlsSite:
    """A balancer on "lb" with two certificates (a.test; *.w.test) before b1."""

    def __init__(self, topology, tls_extra: str = "", workers: int = 2,
                 client_certificates: bool = False) -> None:
        topo = self.topo = topology(["client", "lb", "b1"])
        self.ca = CA(topo.tmp / "pki")
        self.a = self.ca.issue("a", "/CN=a.test", "subjectAltName=DNS:a.test")
        self.w = self.ca.issue("w", "/CN=w.test", "subjectAltName=DNS:*.w.test")
        topo.python_backend("b1", "b1")
        certificates = ", ".join(f"{{cert: {c}, key: {k}}}" for c, k in (self.a, self.w))
        if client_certificates:
            tls_extra += (f", verify: required, client_ca: {self.ca.pem}, "
                          "client_subject_header: X-Client-Subject")
        self.config = (
            f"balancer: {{port: 8443, bind: {topo.hosts['lb']}, workers: {workers}, "
            f"tls: {{certificates: [{certificates}]{tls_extra}}}}}\n"
            f"backends: [{{host: {topo.hosts['b1']}, port: 8000}}]\n"
            f"admin: {{socket: {topo.tmp / 'admin.sock'}}}\n"
            "timeouts: {header: 1s}\n")
        self.lb = topo.balancer("lb", self.config, port=8443)

    def context(self, **versions) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.pem))
        for key, value in versions.items():
            setattr(context, key, value)
        return context

    def connect(self, name: str, context: ssl.SSLContext | None = None) -> ssl.SSLSocket:
        raw = self.topo.connect("client", "lb", 8443, timeout=5)
        context = context or self.context()
        context.check_hostname = name != "other.test"   # the default certificate's names
        return context.wrap_socket(raw, server_hostname=name)

    def get(self, name: str, path: str = "/who") -> tuple[dict, ssl.SSLSocket]:
        sock = self.connect(name)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        return json.loads(body), sock

    def served_subject(self, name: str) -> str:
        sock = self.connect(name)
        subject = dict(x[0] for x in sock.getpeercert()["subject"])["commonName"]
        sock.close()
        return subject


def test_sni_picks_exact_then_wildcard_then_the_first_and_requests_say_https(topology):
    site = TlsSite(topology)
    assert site.served_subject("a.test") == "a.test"
    assert site.served_subject("x.w.test") == "w.test"
    assert site.served_subject("other.test") == "a.test"      # no match: the first one
    report, sock = site.get("x.w.test")
    assert sock.selected_alpn_protocol() is None or sock.selected_alpn_protocol() == "http/1.1"
    headers = {k.lower(): v for k, v in report["headers"]}
    assert headers["x-forwarded-proto"] == "https" and report["backend"] == "b1"


def test_alpn_http11_only_when_configured_and_old_versions_refused(topology):
    site = TlsSite(topology, tls_extra=", min_version: \"1.3\", alpn: [http/1.1]")
    context = site.context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    sock = site.connect("a.test", context)
    assert sock.selected_alpn_protocol() == "http/1.1" and sock.version() == "TLSv1.3"
    sock.close()
    old = site.context(maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        site.connect("a.test", old)
    assert site.served_subject("a.test") == "a.test"          # still serving


def test_alpn_chooses_h2_by_default_and_http11_clients_share_the_listener(topology):
    site = TlsSite(topology, workers=1)
    context = site.context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    sock = site.connect("a.test", context)
    assert sock.selected_alpn_protocol() == "h2"
    sock.close()
    resolve = ["--resolve", f"a.test:8443:{site.topo.hosts['lb']}", "--cacert", str(site.ca.pem)]
    h2 = site.topo.run("client", ["curl", "-sS", "--http2", *resolve, "-w", "\\n%{http_version}",
                                  "https://a.test:8443/over-h2"], timeout=20)
    body, _, version = h2.stdout.rpartition(b"\n")
    report = json.loads(body)
    headers = {k.lower(): v for k, v in report["headers"]}
    assert version == b"2" and report["path"] == "/over-h2", h2
    assert headers["x-forwarded-proto"] == "https" and headers["host"] == "a.test:8443"
    h1 = site.topo.run("client", ["curl", "-sS", "--http1.1", *resolve, "-o", "/dev/null",
                                  "-w", "%{http_version} %{http_code}",
                                  "https://a.test:8443/over-h1"], timeout=20)
    assert h1.stdout == b"1.1 200", h1
    site.topo.wait_for_log(site.lb, '"proto":"h2","tls":"TLSv1.3"')


def test_tls_1_1_is_refused_by_default(topology):
    site = TlsSite(topology)
    address = f"{site.topo.hosts['lb']}:8443"

    def s_client(version: str) -> str:
        out = site.topo.run("client", ["openssl", "s_client", "-connect", address, version,
                                       "-cipher", "DEFAULT:@SECLEVEL=0"], input=b"", timeout=10)
        return (out.stdout + out.stderr).decode(errors="replace")
    assert "Cipher is (NONE)" in s_client("-tls1_1")          # no session: refused
    assert "Protocol  : TLSv1.2" in s_client("-tls1_2")


def test_websocket_over_tls(topology):
    websocket_echo(TlsSite(topology).connect("a.test"))


def test_large_bodies_both_ways_over_tls(topology):
    site = TlsSite(topology)
    report, _ = site.get("a.test", "/who")
    sock = site.connect("a.test")
    body = b"u" * 3_000_000                   # over the splice threshold: never spliced
    sock.sendall(b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n" % len(body) + body)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    answer = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert answer["body_bytes"] == len(body)
    sock = site.connect("a.test")
    sock.sendall(b"GET /bytes/5000000 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    assert len(data.split(b"\r\n\r\n", 1)[1]) == 5_000_000


def test_certificates_reload_under_load_without_a_failed_request(topology):
    site = TlsSite(topology)
    failures, done, stop = [], [0], threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                site.get("a.test")
                done[0] += 1
            except (OSError, AssertionError) as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        new_cert, new_key = site.ca.issue("a2", "/CN=a.test/O=renewed", "subjectAltName=DNS:a.test")
        shutil.copy(new_cert, site.a[0])
        shutil.copy(new_key, site.a[1])
        result = lbctl(site.topo, "reload")
        assert result.returncode == 0, result.stderr
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not failures and done[0] > 20, (failures[:5], done)
    sock = site.connect("a.test")
    subject = dict(x[0] for x in sock.getpeercert()["subject"])
    assert subject.get("organizationName") == "renewed"


def test_a_bad_certificate_on_reload_is_refused_and_the_old_one_stays(topology):
    site = TlsSite(topology)
    with open(site.a[0], "w") as f:
        f.write("not a certificate\n")
    result = lbctl(site.topo, "reload")
    assert result.returncode != 0 and site.a[0] in result.stderr, result.stderr
    assert site.served_subject("a.test") == "a.test"


def test_garbage_and_stalled_handshakes_do_not_stop_the_others(topology):
    site = TlsSite(topology)
    garbage = site.topo.connect("client", "lb", 8443, timeout=5)
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: plain\r\n\r\n")   # HTTP, not a ClientHello
    answer = read_until_closed(garbage)
    assert not answer.startswith(b"HTTP"), answer         # closed, not served
    stalled = [site.topo.connect("client", "lb", 8443, timeout=5) for _ in range(50)]
    report, _ = site.get("a.test")
    assert report["backend"] == "b1"
    started = time.monotonic()
    stalled[0].settimeout(5)
    try:
        assert stalled[0].recv(100) == b""        # closed after timeouts.header (1s)
    except ConnectionResetError:
        pass
    assert time.monotonic() - started < 3
    for sock in [garbage, *stalled]:
        sock.close()


def test_client_certificates_required(topology):
    site = TlsSite(topology, client_certificates=True)
    answer = b""
    try:                                      # no certificate: no request gets through
        sock = site.connect("a.test")
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: a.test\r\n\r\n")
        answer = sock.recv(100)
    except (ssl.SSLError, ConnectionResetError):
        pass
    assert not answer.startswith(b"HTTP"), answer
    cert, key = site.ca.issue("client", "/CN=client-1", "extendedKeyUsage=clientAuth")
    context = site.context()
    context.load_cert_chain(cert, key)
    sock = site.connect("a.test", context)
    sock.sendall(b"GET /who HTTP/1.1\r\nHost: a.test\r\nX-Client-Subject: CN=forged\r\n"
                 b"Connection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    sent = [(k.lower(), v) for k, v in json.loads(data.split(b"\r\n\r\n", 1)[1])["headers"]]
    assert [v for k, v in sent if k == "x-client-subject"] == ["CN=client-1"], sent


def test_lbctl_tls_lists_certificates_and_counts_resumed_handshakes(topology):
    site = TlsSite(topology, workers=2)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = site.context(maximum_version=version)
        for _ in range(3):                    # TLS 1.3 tickets come after the handshake
            first = site.connect("a.test", context)
            first.sendall(b"GET /who HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            while first.recv(65536):
                pass
            session = first.session
            first.close()
            if session is not None and session.has_ticket:
                break
        # A new snapshot reaches the workers (a reload): the keys they had from
        # their first one stay (they were once sent only with a later one).
        assert lbctl(site.topo, "reload").returncode == 0
        # Ten more connections: SO_REUSEPORT spreads them over both workers, and
        # every one resumes (the workers share the ticket keys).
        for _ in range(10):
            raw = site.topo.connect("client", "lb", 8443, timeout=5)
            again = context.wrap_socket(raw, server_hostname="a.test", session=session)
            assert again.session_reused, version
            again.close()
    time.sleep(0.6)                           # a worker report
    shown = json.loads(lbctl(site.topo, "tls", "--json").stdout)
    files = {c["file"]: c for c in shown["certificates"]}
    assert files[site.a[0]]["names"] == ["a.test"] and files[site.w[0]]["names"] == ["*.w.test"]
    assert files[site.a[0]]["expiring"] and files[site.a[0]]["days_left"] < 3    # made for 2 days
    listener = next(iter(shown["listeners"].values()))
    assert listener["handshakes"] >= 22 and listener["resumed"] >= 20, listener
    table = lbctl(site.topo, "tls").stdout
    assert "EXPIRING" in table and "*.w.test" in table
    site.get("x.w.test")
    time.sleep(0.5)                           # access lines are flushed every 250 ms
    access = [json.loads(line) for line in open(site.lb.log_path) if '"event":"request"' in line]
    assert access[-1]["sni"] == "x.w.test" and access[-1]["tls"].startswith("TLSv1.")
    assert access[-1]["cipher"]


def test_tls_to_backends_is_verified_by_name(topology):
    topo = topology(["client", "lb", "b1", "b2"])
    ca = CA(topo.tmp / "pki")
    topo.python_backend("b1", "b1", tls=ca.issue("b1", "/CN=b1.test", "subjectAltName=DNS:b1.test"))

    def balancer(sni: str, name: str, hosts: list[str], health: str = "", more: str = ""):
        listed = ", ".join(f"{{host: {topo.hosts[h]}, port: 8000}}" for h in hosts)
        config = (f"balancer: {{port: 8080, bind: {topo.hosts['lb']}, workers: 1, "
                  f"backend_tls: {{ca: {ca.pem}, sni: {sni}}}}}\n"
                  f"backends: [{listed}]\n"
                  f"health: {{interval: 200ms{health}}}\n{more}"
                  f"admin: {{socket: {topo.tmp / name}.sock}}\n")
        return topo.balancer("lb", config, name=name)

    def get() -> bytes:
        sock = topo.connect("client", "lb", 8080, timeout=5)
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data

    def probed(socket: str) -> dict[str, dict]:
        """Each backend's health row, once every one has a probe on record."""
        for _ in range(40):
            rows = json.loads(lbctl(topo, "health", "--json", socket=socket).stdout)
            if all(row["probes"] for row in rows):
                break
            time.sleep(0.1)
        return {row["name"].split(":")[0]: row for row in rows}

    right = balancer("b1.test", "right", ["b1"])
    answer = get()
    assert answer.startswith(b"HTTP/1.1 200") and b'"backend": "b1"' in answer
    health = probed("right.sock")[topo.hosts["b1"]]       # probes speak TLS too
    assert health["probes"][-1]["ok"] and health["probes"][-1]["detail"] == "200", health
    websocket_echo(topo.connect("client", "lb", 8080, timeout=5))   # TLS on the backend side
    right.terminate()
    right.wait(10)

    # Now the balancer expects "wrong.test": b1's certificate does not name it,
    # b2's does. Probes fail b1 by name; panic (threshold 100%, b2 alone
    # healthy) still sends b1 its share, and that handshake fails too.
    topo.python_backend("b2", "b2", tls=ca.issue("b2", "/CN=wrong.test",
                                                 "subjectAltName=DNS:wrong.test"))
    wrong = balancer("wrong.test", "wrong", ["b1", "b2"], health=", panic_threshold: 100",
                     more="retries: {attempts: 0}\nbreaker: {enabled: false}\n")
    rows = probed("wrong.sock")
    assert "certificate verify failed" in rows[topo.hosts["b1"]]["probes"][-1]["detail"], rows
    assert rows[topo.hosts["b2"]]["probes"][-1]["ok"], rows
    answers = [get() for _ in range(6)]
    assert sorted(a[9:12] for a in answers) == [b"200"] * 3 + [b"502"] * 3, answers
    assert all(b'"backend": "b2"' in a for a in answers if a[9:12] == b"200")
    time.sleep(0.5)                           # access lines are flushed every 250 ms
    access = [json.loads(line) for line in topo.log(wrong).splitlines()
              if '"event":"request"' in line]
    failed = [line for line in access if line["status"] == 502]
    assert len(failed) == 3 and all(
        "certificate verify failed" in line["error"] for line in failed), access


def test_tcp_mode_routes_tls_by_server_name_without_decrypting(topology):
    topo = topology(["client", "lb", "b1", "b2"])
    ca = CA(topo.tmp / "pki")
    topo.python_backend("b1", "b1", tls=ca.issue("b1", "/CN=a.test", "subjectAltName=DNS:a.test"))
    topo.python_backend("b2", "b2", tls=ca.issue("b2", "/CN=w", "subjectAltName=DNS:*.w.test"))
    config = (f"balancer: {{port: 8443, bind: {topo.hosts['lb']}, mode: tcp, workers: 1}}\n"
              f"backends: [{{host: {topo.hosts['b1']}, port: 8000}}]\n"
              f"clusters: {{w: {{backends: [{{host: {topo.hosts['b2']}, port: 8000}}]}}}}\n"
              "routes:\n  - {match: {host: \"*.w.test\"}, cluster: w}\n"
              f"admin: {{socket: {topo.tmp / 'admin.sock'}}}\n")
    topo.balancer("lb", config, port=8443)
    context = ssl.create_default_context(cafile=str(ca.pem))

    def who(name: str) -> str:
        sock = context.wrap_socket(topo.connect("client", "lb", 8443, timeout=5),
                                   server_hostname=name)
        sock.sendall(f"GET /who HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return json.loads(data.split(b"\r\n\r\n", 1)[1])["backend"]

    # The client verifies the backend's own certificate: the stream was not decrypted.
    assert who("api.w.test") == "b2"
    assert who("a.test") == "b1"              # no route: the default group
    plain = topo.connect("client", "lb", 8443, timeout=5)
    plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")   # not TLS: reset, not relayed
    try:
        answer = plain.recv(100)
    except ConnectionResetError:
        answer = b""
    assert answer == b""


def test_session_ticket_keys_rotate_and_the_previous_one_still_resumes(topology):
    site = TlsSite(topology, tls_extra=", ticket_rotation: 2s")
    context = site.context(maximum_version=ssl.TLSVersion.TLSv1_2)

    def rotations() -> int:
        return site.topo.log(site.lb).count('"event":"session ticket keys rotated"')

    def next_rotation() -> None:
        seen = rotations()
        deadline = time.monotonic() + 5
        while rotations() == seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rotations() > seen
        time.sleep(0.3)                        # the workers take the new keys

    def resumes(session) -> bool:
        raw = site.topo.connect("client", "lb", 8443, timeout=5)
        sock = context.wrap_socket(raw, server_hostname="a.test", session=session)
        reused = sock.session_reused
        sock.close()
        return reused

    next_rotation()
    first = site.connect("a.test", context)
    session = first.session
    first.close()
    assert resumes(session)
    next_rotation()
    assert resumes(session)                   # its key is the previous one now
    next_rotation()
    assert not resumes(session)               # and now it is gone: a full handshake
    assert "session ticket keys not installed" not in site.topo.log(site.lb)


def test_ten_thousand_handshakes_that_never_start_do_not_stop_the_others(topology):
    site = TlsSite(topology)                  # timeouts.header: 1s bounds each handshake
    workers = site.topo.worker_pids(site.lb, 2)

    def descriptors() -> int:
        return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in workers)

    baseline = descriptors()
    stalled = []
    deadline = time.monotonic() + 30
    while len(stalled) < 10_000 and time.monotonic() < deadline:
        sock = site.topo.socket("client")
        sock.setblocking(False)
        sock.connect_ex((site.topo.hosts["lb"], 8443))     # and never a byte
        stalled.append(sock)
    try:
        assert len(stalled) == 10_000
        started = time.monotonic()
        report, _ = site.get("a.test")         # someone else is served meanwhile
        assert report["backend"] == "b1" and time.monotonic() - started < 5
        peak = descriptors()
        time.sleep(3.0)                        # every stalled handshake timed out by now
        after = descriptors()
        assert peak > baseline + 1000, (baseline, peak)    # they were accepted...
        assert after <= baseline + 20, (baseline, peak, after)   # ...and closed in time
        assert site.lb.poll() is None
    finally:
        for sock in stalled:
            sock.close()
