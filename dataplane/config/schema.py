"""The configuration's sections, keys and defaults (docs/config.md lists them)."""

from __future__ import annotations

import os
from typing import Annotated, Literal

import msgspec

from .units import Duration, Rate

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Bytes = Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)]


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# Mozilla's "intermediate" choice for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults).
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305"))


class CertificateSettings(Section):
    cert: Annotated[str, msgspec.Meta(min_length=1)]      # PEM: the certificate and its chain
    key: Annotated[str, msgspec.Meta(min_length=1)]       # PEM: its private key
    source: str | None = None     # set by the balancer: the file a private copy came from


class ListenerTlsSettings(Section):
    """HTTPS on the listener (docs/tls.md)."""
    certificates: Annotated[list[CertificateSettings], msgspec.Meta(min_length=1)]
    min_version: Literal["1.2", "1.3"] = "1.2"
    # Offered in this order; h2 serves HTTP/2 (docs/http2.md).
    alpn: Annotated[list[Literal["h2", "http/1.1"]], msgspec.Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: ["h2", "http/1.1"])
    ciphers: Annotated[str, msgspec.Meta(min_length=1)] = INTERMEDIATE_CIPHERS
    client_ca: str | None = None          # PEM: CAs whose client certificates are accepted
    verify: Literal["none", "optional", "required"] = "none"
    ticket_rotation: Duration = Duration(12 * 3600)   # session ticket keys renewed
    # The kernel encrypts after our handshake (docs/tls.md): auto where it can, on or refuse to start.
    # YAML reads a bare on/off as true/false: both spellings mean the same.
    ktls: Literal["auto", "on", "off"] | bool = "auto"
    # The verified client certificate's subject goes to the backend in this header
    # (a client's own header of that name is always removed).
    client_subject_header: Annotated[str, msgspec.Meta(
        pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")] | None = None


    def __post_init__(self) -> None:
        if isinstance(self.ktls, bool):
            self.ktls = "on" if self.ktls else "off"


class BackendTlsSettings(Section):
    """TLS to a group's backends (connections and probes)."""
    verify: bool = True               # the certificate, and that it names the backend
    ca: str | None = None             # PEM CAs to trust; unset: the system's
    sni: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9.-]{1,253}$")] | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"


class Http2Settings(Section):
    """HTTP/2 to clients (docs/http2.md): over TLS by ALPN, or cleartext (h2c)
    with prior knowledge when ``cleartext`` is on."""
    cleartext: bool = False
    max_concurrent_streams: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    # Flow-control windows we grant a client: per stream, and for the connection.
    initial_window_size: Annotated[int, msgspec.Meta(ge=65535, le=2**31 - 1)] = 65535
    connection_window_size: Annotated[int, msgspec.Meta(ge=65535, le=2**31 - 1)] = 1 << 20
    max_frame_size: Annotated[int, msgspec.Meta(ge=16384, le=2**24 - 1)] = 16384
    header_table_size: Annotated[int, msgspec.Meta(ge=0, le=65536)] = 4096   # HPACK
    # Streams a client may reset per second before it is sent GOAWAY
    # ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
    max_resets_per_second: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    # PING, SETTINGS, WINDOW_UPDATE, PRIORITY and empty DATA frames per second.
    max_control_frames_per_second: Annotated[int, msgspec.Meta(ge=10, le=1_000_000)] = 1000


class BalancerSettings(Section):
    port: Port = 8080
    bind: str = "0.0.0.0"
    mode: Literal["http", "tcp"] = "http"
    workers: Literal["auto"] | Annotated[int, msgspec.Meta(ge=1, le=256)] = "auto"
    algorithm: Literal["round_robin", "random", "least_request", "ring_hash", "maglev",
                       "bounded_load"] = "round_robin"
    hash_key: Annotated[str, msgspec.Meta(
        pattern=r"^(client_ip|path|(header|cookie|query):[!#$%&'*+.^_`|~0-9A-Za-z-]+)$")] = "client_ip"
    ring_size: Annotated[int, msgspec.Meta(ge=1024, le=8 * 1024 * 1024)] | None = None
    maglev_table_size: Annotated[int, msgspec.Meta(ge=251, le=5_000_011)] = 65537  # prime
    balance_factor: Annotated[float, msgspec.Meta(ge=1.0, le=10.0)] = 1.25
    health_check_interval: Duration = Duration(10)    # the probe interval (health checks)
    resolve_interval: Duration = Duration(30)         # host names are looked up again
    failure_threshold: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 8.0
    relay: Literal["auto", "splice", "copy", "sockmap"] = "auto"
    send_proxy: Literal["v1", "v2"] | None = None   # PROXY header to the default group
    accept_proxy: bool = False        # connections must start with a PROXY header...
    trusted_proxies: list[Annotated[str, msgspec.Meta(max_length=64)]] = msgspec.field(
        default_factory=list)         # ...and come from these CIDRs; others are refused
    tls: ListenerTlsSettings | None = None    # HTTPS on the listener
    backend_tls: BackendTlsSettings | None = None   # TLS to the default group's backends
    http2: Http2Settings = msgspec.field(default_factory=Http2Settings)
    protocol: Literal["http1", "h2", "h2c"] = "http1"   # to the backends (docs/http2.md)

    def worker_count(self) -> int:
        if self.workers == "auto":
            return os.cpu_count() or 1
        return int(self.workers)


class BackendSettings(Section):
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    port: Port
    weight: Annotated[int, msgspec.Meta(ge=0, le=10000)] = 100
    # unset: the kernel's default; else a kernel algorithm, one of bpf/, or pacer
    congestion_control: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{1,15}$")] | None = None
    client_side: bool = False    # also set on client sockets this backend serves

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class PoolSettings(Section):
    max_idle: Count = 100
    max_active: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    idle_timeout: Duration = Duration(60)
    max_requests_per_connection: Count = 1000     # 0 = no limit
    connect_timeout: Duration | None = None        # unset: timeouts.connect
    max_queue: Count = 1024                        # requests waiting per backend
    queue_timeout: Duration = Duration(5)


class TimeoutSettings(Section):
    connect: Duration = Duration(2)   # TCP connect to a backend
    header: Duration = Duration(10)   # client must send a whole request head
    idle: Duration = Duration(60)     # no byte moved on a connection either way
    request: Duration = Duration(30)  # backend must start its response
    shutdown: Duration = Duration(30)  # grace for in-flight work after SIGTERM
    backend_idle: Duration = Duration(60)   # no byte from a backend mid-response
    client_body: Duration = Duration(60)    # no byte of a request body from the client
    client_write: Duration = Duration(60)   # the client takes none of a held-back response
    total: Duration | None = None           # the whole exchange, retries included
    orphan: Duration = Duration(60)   # workers serve on after the control process died


class LimitSettings(Section):
    header_bytes: Bytes = 64 * 1024      # request line + headers, per request
    headers: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    buffer: Bytes = 256 * 1024           # per direction, per connection
    connections: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10_000  # per worker
    body_bytes: Annotated[int, msgspec.Meta(ge=0, le=1 << 50)] | None = None   # request body
    # Per client address, for the whole balancer (dataplane/limits); unset = off.
    per_client_connections: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    per_client_rate: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None   # per s


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    access: bool = True
    format: Literal["auto", "json", "console"] = "auto"
    file: Annotated[str, msgspec.Meta(min_length=1)] | None = None   # None: standard output
    summary: Duration = Duration(10)   # control process's periodic summary; 0 = off
    # The access line of each HTTP request: json (as log.format renders it), HAProxy's
    # httplog, nginx's combined, or a template of %-variables (docs/logging.md).
    access_format: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] = "json"


class RequestIdSettings(Section):
    """Each HTTP request's ID: sent to the backend, logged, on the balancer's
    own answers, echoed to the client when asked (docs/logging.md)."""
    enabled: bool = True
    header: Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")] = \
        "X-Request-Id"
    trust_incoming: bool = False     # keep a client's own ID (else it is replaced)
    echo: bool = False               # backends' responses carry it to the client
    format: Literal["hex", "uuid"] = "hex"   # 32 hex digits, or a UUID (version 4)


class AdminSettings(Section):
    socket: str = "/run/l7lb/admin.sock"
    mode: Annotated[str, msgspec.Meta(pattern=r"^0?[0-7]{3}$")] = "0600"
    group: Annotated[str, msgspec.Meta(min_length=1)] | None = None   # may use the socket too


class PacerSettings(Section):
    """The pure-Python AIMD pacer (dataplane/pacer.py)."""
    interval: Duration = Duration(0.1)      # 10ms to 10s
    start_rate: Rate = Rate(100e6)
    min_rate: Rate = Rate(1e6)
    max_rate: Rate = Rate(10e9)
    increase: Rate = Rate(10e6)        # added per interval while the path is clean
    decrease: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.7   # factor on congestion
    rtt_tolerance: Annotated[float, msgspec.Meta(ge=0, le=100)] = 1.0  # above min RTT, as a fraction


class AutoCcSettings(Section):
    """``congestion_control: auto`` (dataplane/congestion/auto_rule.py)."""
    interval: Duration = Duration(10)       # the rule is applied this often (1s to 1h)
    window: Duration = Duration(60)         # over the samples of this long (at least interval)
    hold: Duration = Duration(60)           # a backend's choice changes at most this often


class CongestionSettings(Section):
    bpf: Literal["auto", "off"] = "auto"     # off: BPF algorithms fall back to the pacer
    tunables: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    pacer: PacerSettings = msgspec.field(default_factory=PacerSettings)
    auto: AutoCcSettings = msgspec.field(default_factory=AutoCcSettings)


class HealthSettings(Section):
    """Active probes, passive signals and the phi-accrual detector (docs/health.md)."""
    # unset: http in http mode (the HTTP/2 handshake for an h2/h2c group), tcp in tcp mode
    type: Literal["http", "tcp", "grpc"] | None = None
    grpc_service: Annotated[str, msgspec.Meta(max_length=255)] = ""   # type grpc: "" = the server
    path: Annotated[str, msgspec.Meta(pattern=r"^/[!-~]*$", max_length=2048)] = "/"
    host: Annotated[str, msgspec.Meta(pattern=r"^[!-~]{1,255}$")] | None = None  # Host header
    expect: Annotated[str, msgspec.Meta(
        pattern=r"^\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*$")] = "200-399"
    interval: Duration | None = None          # unset: balancer.health_check_interval
    fast_interval: Duration | None = None     # unset: the interval, at most 1s
    timeout: Duration = Duration(1)
    rise: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    fall: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    slow_start: Duration = Duration(30)       # 0 = off
    panic_threshold: Annotated[float, msgspec.Meta(ge=0, le=100)] = 50.0
    window: Annotated[int, msgspec.Meta(ge=10, le=100_000)] = 1000
    min_std_deviation: Duration = Duration(0.1)
    acceptable_pause: Duration = Duration(0)
    passive: bool = True
    passive_errors: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3

    def expect_ranges(self) -> tuple[tuple[int, int], ...]:
        ranges = []
        for part in self.expect.split(","):
            low, _, high = part.partition("-")
            ranges.append((int(low), int(high or low)))
        return tuple(ranges)


# gRPC status codes by number (github.com/grpc/grpc/blob/master/doc/statuscodes.md).
GRPC_STATUSES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                 "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                 "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                 "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
GrpcStatus = Literal["CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                     "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                     "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                     "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"]


class RetrySettings(Section):
    """Retries on another backend (docs/health.md)."""
    attempts: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    # A gRPC call answered trailers-only with one of these goes to another
    # backend, when its whole request is still held (docs/http2.md).
    grpc_status: list[GrpcStatus] = msgspec.field(default_factory=lambda: ["UNAVAILABLE"])
    per_try_timeout: Duration | None = None   # unset: timeouts.request
    budget_percent: Annotated[float, msgspec.Meta(ge=0, le=100)] = 20.0
    min_concurrent: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 3


Limit = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class BreakerSettings(Section):
    """Circuit breakers and the per-backend limits (docs/breakers.md)."""
    enabled: bool = True
    window: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100           # calls
    min_calls: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 20
    failure_rate: Annotated[float, msgspec.Meta(gt=0, le=100)] = 50.0     # percent
    consecutive_failures: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5
    slow_call: Duration | None = None                                      # unset: off
    slow_call_rate: Annotated[float, msgspec.Meta(gt=0, le=100)] = 80.0   # percent
    failure_on: list[Literal["connect", "reset", "timeout", "5xx", "503"]] = msgspec.field(
        default_factory=lambda: ["connect", "reset", "timeout", "5xx"])
    open_for: Duration = Duration(5)
    max_open_for: Duration = Duration(300)
    half_open_calls: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    max_ejection_percent: Annotated[float, msgspec.Meta(ge=0, le=100)] = 50.0
    max_connections: Limit | None = None     # for the whole balancer, per backend
    max_pending: Limit | None = None
    max_requests: Limit | None = None


class TracingSettings(Section):
    """W3C trace context and OTLP/HTTP export (docs/tracing.md); needs the
    l7lb[tracing] extra when enabled."""
    enabled: bool = False
    ratio: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.01   # of new traces recorded
    endpoint: Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$")] = \
        "http://127.0.0.1:4318/v1/traces"
    service_name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "l7lb"
    headers: dict[str, str] = msgspec.field(default_factory=dict)   # sent with each export
    timeout: Duration = Duration(10)          # per export request


class MetricsSettings(Section):
    """Prometheus metrics, /healthz, /ready and the dashboard (docs/metrics.md,
    docs/dashboard.md); off when listen is unset."""
    listen: Annotated[str, msgspec.Meta(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):[0-9]{1,5}$")] | None = None
    dashboard: bool = True          # the page at / and its JSON at /dashboard.json


class FleetTlsSettings(Section):
    """TLS to etcd: the CA that signed its certificate, and ours if it asks."""
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


class FleetSettings(Section):
    """Several balancers as one through etcd (docs/fleet.md); off when unset."""
    etcd: Annotated[list[Annotated[str, msgspec.Meta(pattern=r"^https?://[^/\s]+/?$")]],
                    msgspec.Meta(min_length=1)]
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None
    prefix: Annotated[str, msgspec.Meta(pattern=r"^/[!-~]*[^/]$")] = "/l7lb"
    probe_replicas: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    lease_ttl: Duration = Duration(3)
    timeout: Duration = Duration(1)      # each etcd request
    user: str | None = None
    password: str | None = None
    tls: FleetTlsSettings | None = None
