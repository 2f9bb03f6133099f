"""Tracing end to end: a client's trace continued through the balancer to the
backend, which reads the traceparent it was given, and the balancer's spans
arriving at a local OTLP/HTTP receiver that decodes them with
OpenTelemetry's own protobuf messages."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import balancer_config
from topology import HTTPConnection, inside

trace_service = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="needs opentelemetry-proto (the test extras)")

CLIENT_TRACE, CLIENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


class Receiver(ThreadingHTTPServer):
    """A local OTLP/HTTP collector: keeps every span it is sent."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.spans: list = []
        self.resources: list = []
        self.lock = threading.Lock()
        super().__init__(address, _Handler)

    def wait(self, ready, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if ready(self.spans):
                    return list(self.spans)
            time.sleep(0.1)
        with self.lock:
            return list(self.spans)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = trace_service.ExportTraceServiceRequest.FromString(body)
        server: Receiver = self.server      # type: ignore[assignment]
        with server.lock:
            for resource_spans in request.resource_spans:
                server.resources.append({a.key: a.value for a in
                                         resource_spans.resource.attributes})
                for scope in resource_spans.scope_spans:
                    server.spans.extend(scope.spans)
        answer = trace_service.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def attributes(span) -> dict:
    values = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        values[item.key] = getattr(item.value, kind)
    return values


def test_a_trace_goes_from_client_through_balancer_to_backend_and_is_exported(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb_ip = topo.hosts["lb"]
    with inside(topo.ns("lb")):
        receiver = Receiver((lb_ip, 4318))
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        topo.balancer("lb", balancer_config(topo, ["b1"], extra=(
            f"tracing: {{enabled: true, ratio: 1.0, endpoint: 'http://{lb_ip}:4318/v1/traces',"
            " service_name: edge}\n"
            "clusters:\n  empty: {backends: []}\n"
            "routes:\n  - {name: gone, match: {path: {prefix: /nowhere}}, cluster: empty}\n")))
        conn = HTTPConnection(topo, "client", "lb", 8080)

        def backend_read(path: str, traceparent: str | None = None) -> dict[str, str]:
            headers = {"traceparent": traceparent, "tracestate": "vendor=1"} if traceparent \
                else {}
            conn.request("GET", path, headers=headers)
            return dict(json.loads(conn.getresponse().read())["headers"])

        # 1. A client's sampled trace is continued: same trace, our span as the parent.
        got = backend_read("/traced", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
        version, trace_id, parent, flags = got["traceparent"].split("-")
        assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01") and parent != CLIENT_SPAN
        assert got["tracestate"] == "vendor=1"           # passed unchanged
        request_id = got["X-Request-Id"]
        # 2. No context (the fast lane): a new trace at ratio 1.0.
        fresh = backend_read("/fresh")["traceparent"].split("-")
        assert fresh[1] != CLIENT_TRACE and fresh[3] == "01"
        # 3. A caller that did not sample: continued, not recorded.
        unsampled = "1" * 32
        seen = backend_read("/unsampled", f"00-{unsampled}-{CLIENT_SPAN}-00")["traceparent"]
        assert seen.startswith(f"00-{unsampled}-") and seen.endswith("-00")
        # 4. A malformed context starts a new trace.
        broken = backend_read("/broken", "00-xyz-01")["traceparent"].split("-")
        assert len(broken[1]) == 32 and broken[1] != CLIENT_TRACE
        # 5. The balancer's own answer: a server span, no upstream one.
        conn.request("GET", "/nowhere")
        assert conn.getresponse().status == 503

        spans = receiver.wait(lambda spans: len(spans) >= 7)
        by_trace: dict[str, list] = {}
        for span in spans:
            by_trace.setdefault(span.trace_id.hex(), []).append(span)
        assert unsampled not in by_trace
        assert len(spans) == 7, [(s.name, s.trace_id.hex()) for s in spans]
        server, client = sorted(by_trace[CLIENT_TRACE], key=lambda s: s.kind)
        assert (server.kind, client.kind) == (2, 3)       # SERVER, CLIENT
        assert server.parent_span_id.hex() == CLIENT_SPAN
        assert client.parent_span_id == server.span_id
        assert client.span_id.hex() == parent              # what the backend was told
        assert server.start_time_unix_nano <= client.start_time_unix_nano \
            <= client.end_time_unix_nano <= server.end_time_unix_nano
        told = attributes(server)
        assert told["http.response.status_code"] == 200 and told["url.path"] == "/traced"
        assert told["server.address"] == topo.hosts["b1"] and told["server.port"] == 8000
        assert told["l7lb.request_id"] == request_id and told["l7lb.cluster"] == "default"
        assert server.name == "GET default"
        root = [s for s in by_trace[fresh[1]] if s.kind == 2]
        assert len(root) == 1 and root[0].parent_span_id == b""
        [answered] = [s for s in spans if attributes(s).get("http.route") == "gone"]
        assert answered.name == "GET gone" and answered.status.code == 2   # ERROR
        assert attributes(answered)["http.response.status_code"] == 503
        assert receiver.resources[0]["service.name"].string_value == "edge"
    finally:
        receiver.shutdown()
        receiver.server_close()
