"""HTTP/2 to clients, end to end: curl, nghttp and h2load against the real
balancer (h2c with prior knowledge here; h2 over TLS in test_tls_e2e.py),
Python backends behind it, and the attacks of docs/http2.md written frame by
frame (h2client.py), each against the running balancer, which must go on
serving everyone else."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time

import pytest
from hyperframe.frame import (ContinuationFrame, HeadersFrame, PingFrame,
                              SettingsFrame, WindowUpdateFrame)
from hpack import Decoder, Encoder

from conftest import ask_backend, balancer_config, stats_when
from dataplane.http2.frames import PREFACE
from h2client import H2Client, raw_frames
from topology import Topology

PATTERN = bytes(range(256)) * 256     # what the test backend's /bytes/N repeats
ENHANCE_YOUR_CALM = 11


@pytest.fixture(scope="module")
def site():
    topo = Topology(["client", "lb", "b1", "b2"])
    try:
        topo.python_backend("b1", "b1")
        topo.python_backend("b2", "b2")
        config = balancer_config(topo, ["b1", "b2"], extra=(
            "timeouts: {client_body: 1s}\n"
            "limits: {header_bytes: 16384}\n"
            # Nothing listens on port 9: the group's calls are refused.
            f"clusters: {{dead: {{backends: [{{host: {topo.hosts['b1']}, port: 9}}]}}}}\n"
            "routes: [{name: dead, match: {path: {prefix: /dead.}}, cluster: dead}]\n")).replace(
            "workers: 1}", "workers: 1, http2: {cleartext: true, max_resets_per_second: 50, "
                           "max_control_frames_per_second: 200}}")
        topo.lb = topo.balancer("lb", config)
        yield topo
    finally:
        topo.close()


def url(topo: Topology, path: str) -> str:
    return f"http://{topo.hosts['lb']}:8080{path}"


def curl(topo: Topology, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return topo.run("client", ["curl", "-sS", "--max-time", str(timeout), *args],
                    timeout=timeout + 5)


def client(topo: Topology) -> H2Client:
    return H2Client(topo.connect("client", "lb", 8080, timeout=5))


def served(topo: Topology) -> int:
    return sum(json.loads(ask_backend(topo, name, "/_stats"))["requests"]
               for name in ("b1", "b2"))


def still_serving(topo: Topology) -> None:
    out = curl(topo, "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
               url(topo, "/after"), timeout=10)
    assert out.stdout == b"200", out


def test_curl_prior_knowledge_reaches_a_backend_and_is_logged_as_h2c(site):
    out = curl(site, "--http2-prior-knowledge", "-D", "-", url(site, "/hello?x=1"))
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200"), out
    report = json.loads(body)
    headers = {k.lower(): v for k, v in report["headers"]}
    assert report["path"] == "/hello?x=1" and report["version"] == "HTTP/1.1"
    assert headers["host"] == f"{site.hosts['lb']}:8080"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-for"] == site.hosts["client"]
    site.wait_for_log(site.lb, '"proto":"h2c","method":"GET","path":"/hello?x=1","status":200')
    listener = f"{site.hosts['lb']}:8080"
    stats = stats_when(site, lambda s: s["listeners"][listener]["http2_streams"] >= 1)
    assert stats["listeners"][listener]["http2_connections"] >= 1


def test_http11_still_served_on_the_same_listener(site):
    out = curl(site, "--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
               url(site, "/one"))
    assert out.stdout == b"200 1.1", out


def test_streams_of_one_connection_are_balanced_one_by_one(site):
    before = {name: json.loads(ask_backend(site, name, "/_stats"))["requests"]
              for name in ("b1", "b2")}
    out = site.run("client", ["h2load", "-n", "400", "-c", "1", "-m", "10",
                              url(site, "/spread")], timeout=60)
    assert b"400 succeeded" in out.stdout and b"400 2xx" in out.stdout, out.stdout
    gained = [json.loads(ask_backend(site, name, "/_stats"))["requests"] - before[name]
              for name in ("b1", "b2")]
    # Round robin: 200 each (health probes may add one or two).
    assert 400 <= sum(gained) <= 406 and min(gained) >= 190, gained


def test_100_mb_download_and_upload_over_one_stream_byte_for_byte(site, tmp_path):
    size = 100_000_000
    expected = hashlib.sha256((PATTERN * (size // len(PATTERN) + 1))[:size]).hexdigest()
    out = curl(site, "--http2-prior-knowledge", "-o", str(tmp_path / "down"),
               "-w", "%{http_code} %{size_download}", url(site, f"/bytes/{size}"), timeout=120)
    assert out.stdout == b"200 %d" % size, out
    assert hashlib.sha256((tmp_path / "down").read_bytes()).hexdigest() == expected
    upload = tmp_path / "up"
    upload.write_bytes((PATTERN * (size // len(PATTERN) + 1))[:size])
    out = curl(site, "--http2-prior-knowledge", "--data-binary", f"@{upload}",
               url(site, "/upload"), timeout=120)
    report = json.loads(out.stdout)
    assert report["body_bytes"] == size and report["body_sha256"] == expected


def test_a_body_without_length_goes_chunked_with_trailers_back(site):
    h2 = client(site)
    sid = h2.request("/echo", method="POST", body=b"x" * 1000, end=False)
    h2.conn.send_data(sid, b"y" * 500, end_stream=True)
    h2.flush()
    trailers = h2.request("/bytes/1000?framing=chunked&trailer=1")
    assert h2.read(lambda c: c.finished(sid, trailers))
    report = json.loads(h2.responses[sid].body)
    headers = {k.lower(): v for k, v in report["headers"]}
    assert report["body_bytes"] == 1500 and headers["transfer-encoding"] == "chunked"
    assert h2.responses[trailers].body == PATTERN[:1000]
    h2.close()


def test_nghttp_concurrent_streams_get_their_own_answers(site):
    paths = [f"/s{i}" for i in range(20)]
    out = site.run("client", ["nghttp", "-n", "-s", *(url(site, p) for p in paths)], timeout=30)
    rows = re.findall(rb"\s200\s+\d+\s+(/s\d+)", out.stdout)
    assert sorted(rows) == sorted(p.encode() for p in paths), out.stdout


def test_a_stalled_request_body_times_out_and_the_connection_goes_on(site):
    h2 = client(site)
    stalled = h2.request("/stall", method="POST", body=b"x" * 10, end=False)
    assert h2.read(lambda c: c.finished(stalled), timeout=5)
    assert h2.responses[stalled].status == 408
    other = h2.request("/other")
    assert h2.read(lambda c: c.finished(other)) and h2.responses[other].status == 200
    h2.close()


# -- gRPC -------------------------------------------------------------------------
GRPC_CALL = """
import sys, grpc
call = grpc.insecure_channel(sys.argv[1]).unary_unary(sys.argv[2])
try:
    call(b"", timeout=5)
    print("OK")
except grpc.RpcError as error:
    print(error.code().name, error.details())
"""


def test_a_grpc_client_gets_unavailable_when_the_balancer_has_no_backend_for_it(site):
    out = site.run("client", [sys.executable, "-c", GRPC_CALL, f"{site.hosts['lb']}:8080",
                              "/dead.Health/Check"], timeout=30)
    assert out.stdout.decode().startswith("UNAVAILABLE "), out


def grpc_call(h2: H2Client, path: str, timeout: bytes) -> int:
    return h2.request(path, method="POST", body=b"\0\0\0\0\0", headers=[
        (b"content-type", b"application/grpc"), (b"te", b"trailers"),
        (b"grpc-timeout", timeout)])


def test_grpc_timeout_caps_the_call_and_goes_to_the_backend(site):
    h2 = client(site)
    started = time.monotonic()
    slow = grpc_call(h2, "/slow/3000", b"300m")
    assert h2.read(lambda c: c.finished(slow), timeout=5)
    answer = h2.responses[slow]
    assert time.monotonic() - started < 2
    assert answer.status == 200 and answer.headers[b"grpc-status"] == b"4", answer.headers
    told = grpc_call(h2, "/echo", b"10S")
    assert h2.read(lambda c: c.finished(told))
    headers = dict(json.loads(h2.responses[told].body)["headers"])
    assert headers["grpc-timeout"] == "10000m"
    h2.close()


# -- attacks -------------------------------------------------------------------
def test_rapid_reset_is_sent_enhance_your_calm_and_the_work_stays_bounded(site):
    before = served(site)
    h2 = client(site)
    try:
        for _ in range(500):
            sid = h2.request("/slow/200")
            h2.conn.reset_stream(sid)
            h2.flush()
    except OSError:
        pass      # closed under us: what the read below checks
    assert h2.read(lambda c: c.goaway is not None)
    assert h2.goaway.error_code == ENHANCE_YOUR_CALM
    h2.close()
    time.sleep(0.5)
    assert served(site) - before <= 2 * 50 + 10     # max_resets_per_second, twice at most
    still_serving(site)


@pytest.mark.parametrize("frame", ["ping", "settings", "window_update"])
def test_control_frame_floods_are_sent_enhance_your_calm(site, frame):
    h2 = client(site)
    make = {"ping": lambda: PingFrame(0, b"12345678"),
            "settings": lambda: SettingsFrame(0, {0x4: 65535}),
            "window_update": lambda: WindowUpdateFrame(0, 1)}[frame]
    flood = b"".join(make().serialize() for _ in range(5000))
    try:
        h2.sock.sendall(flood)
    except OSError:
        pass      # closed under us: what the read below checks
    assert h2.read(lambda c: c.goaway is not None)
    assert h2.goaway.error_code == ENHANCE_YOUR_CALM
    h2.close()
    still_serving(site)


def test_a_continuation_flood_is_bounded_by_the_head_limit(site):
    h2 = client(site)
    block = Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"),
                              (b":authority", b"x"), (b":path", b"/")])
    frames = [HeadersFrame(1, block)]          # no END_HEADERS: the block goes on
    frames += [ContinuationFrame(1, Encoder().encode([(b"x-pad", b"a" * 4000)]))
               for _ in range(60)]
    try:
        h2.sock.sendall(b"".join(f.serialize() for f in frames))
    except OSError:
        pass
    assert h2.read(lambda c: c.goaway is not None or c.closed)
    assert h2.goaway is not None and h2.goaway.error_code == ENHANCE_YOUR_CALM
    h2.close()
    still_serving(site)


def test_an_hpack_bomb_is_answered_431_and_the_connection_goes_on(site):
    sock = site.connect("client", "lb", 8080, timeout=5)
    encoder = Encoder()
    # One 4 KB field into the dynamic table, then referred to 200 times (one
    # byte each): 800 KB decoded from about 4 KB.
    first = encoder.encode([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"),
                            (b":path", b"/"), (b"x-bomb", b"b" * 4000)])
    again = encoder.encode([(b"x-bomb", b"b" * 4000)]) * 200
    bomb = HeadersFrame(1, first + again)
    bomb.flags.add("END_HEADERS")
    bomb.flags.add("END_STREAM")
    after = HeadersFrame(3, encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                            (b":authority", b"x"), (b":path", b"/next")]))
    after.flags.add("END_HEADERS")
    after.flags.add("END_STREAM")
    sock.sendall(PREFACE + SettingsFrame(0).serialize() + bomb.serialize() + after.serialize())
    frames = raw_frames(sock, timeout=2)
    sock.close()
    decoder = Decoder()
    heads = {sid: dict(decoder.decode(payload, raw=True)) for kind, flags, sid, payload in frames
             if kind == 1}
    assert heads[1][b":status"] == b"431" and heads[3][b":status"] == b"200", frames
    still_serving(site)


def test_streams_beyond_max_concurrent_streams_are_refused(site):
    h2 = client(site)
    assert h2.read(lambda c: c.conn.remote_settings.max_concurrent_streams == 100)
    sids = [h2.request("/slow/300") for _ in range(100)]
    assert h2.read(lambda c: c.finished(*sids), timeout=20)
    assert all(h2.responses[s].status == 200 for s in sids)
    h2.close()
    # A client that ignores the setting: the 101st stream is refused, the rest served.
    sock = site.connect("client", "lb", 8080, timeout=5)
    encoder = Encoder()
    frames = []
    for sid in range(1, 203, 2):
        frame = HeadersFrame(sid, encoder.encode([
            (b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"),
            (b":path", b"/slow/300")]))
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        frames.append(frame.serialize())
    sock.sendall(PREFACE + SettingsFrame(0).serialize() + b"".join(frames))
    got = raw_frames(sock, timeout=3)
    sock.close()
    refused = [(sid, payload) for kind, _, sid, payload in got if kind == 3]
    answered = {sid for kind, _, sid, _ in got if kind == 1}
    assert refused == [(201, (7).to_bytes(4, "big"))], got    # REFUSED_STREAM
    assert answered == set(range(1, 201, 2))
    still_serving(site)


def test_reset_streams_leave_the_backend_connection_pool_usable(site):
    h2 = client(site)
    sid = h2.request("/slow/500")
    time.sleep(0.1)
    h2.conn.reset_stream(sid)
    h2.flush()
    follow = h2.request("/after-reset")
    assert h2.read(lambda c: c.finished(follow)) and h2.responses[follow].status == 200
    h2.close()


def test_shutdown_sends_goaway_and_streams_in_flight_finish(site):
    """Last in the module: it stops the balancer. nghttp prints the frames."""
    watch = subprocess.Popen(
        ["ip", "netns", "exec", site.ns("client"), "nghttp", "-v", url(site, "/slow/1000")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        site.wait_for_log(site.lb, '"event":"worker started"')
        time.sleep(0.4)
        site.lb.terminate()
        out, _ = watch.communicate(timeout=15)
    finally:
        watch.kill()
    goaway = re.search(rb"recv GOAWAY frame <[^>]*>\s*\(last_stream_id=(\d+), error_code=(\w+)",
                       out)
    stream = re.search(rb"recv \(stream_id=(\d+)\) :status: (\d+)", out)
    assert goaway and stream, out
    assert goaway.group(2) == b"NO_ERROR" and goaway.group(1) == stream.group(1)
    after = out[goaway.end():]
    assert stream.group(2) == b"200" and re.search(rb"recv DATA frame <[^>]*flags=0x01", after), out
    site.lb.wait(timeout=30)
    assert site.lb.returncode == 0
