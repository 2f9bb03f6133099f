"""Configuration: the YAML schema, its defaults, and validation with clear errors.

A file is checked as a whole before anything starts. Every problem is reported
as one line, ``FILE:LINE: key.path: what is wrong``, and callers exit with
code 2 (see ``lbctl check``). Defaults and limits are listed in docs/config.md.
"""

from __future__ import annotations

import os
import re
import typing
from typing import Annotated, Any, Literal

import msgspec
import msgspec.structs
import yaml

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Bytes = Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the key."""


class Duration(float):
    """Seconds, written in YAML as ``250ms``, ``10s``, ``2m`` or a bare number of seconds."""

    _UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
    _PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")

    @classmethod
    def parse(cls, value: Any) -> "Duration":
        if isinstance(value, bool):
            raise ValueError("expected a duration such as 500ms, 10s or 2m, got a boolean")
        if isinstance(value, (int, float)):
            seconds = float(value)
        elif isinstance(value, str) and (match := cls._PATTERN.match(value)):
            seconds = float(match.group(1)) * cls._UNITS[match.group(2) or "s"]
        else:
            raise ValueError(f"expected a duration such as 500ms, 10s or 2m, got {value!r}")
        if not 0 <= seconds <= 86400:
            raise ValueError(f"duration {value!r} is out of range (0 to 24h)")
        return cls(seconds)


class Rate(float):
    """Bits per second, written like tc: ``50Mbit``, ``500kbit``, ``1Gbit`` or a bare number."""

    _UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    _PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?bit)?\s*$", re.IGNORECASE)

    @classmethod
    def parse(cls, value: Any) -> "Rate":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bits = float(value)
        elif isinstance(value, str) and (match := cls._PATTERN.match(value)):
            bits = float(match.group(1)) * cls._UNITS[(match.group(2) or "bit").lower()]
        else:
            raise ValueError(f"expected a rate such as 500kbit, 50Mbit or 1Gbit, got {value!r}")
        if not 8_000 <= bits <= 1e12:
            raise ValueError(f"rate {value!r} is out of range (8kbit to 1000Gbit)")
        return cls(bits)

    @property
    def bytes_per_second(self) -> int:
        return int(self / 8)


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Balancer(Section):
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
    relay: Literal["auto", "splice", "copy"] = "auto"

    def worker_count(self) -> int:
        if self.workers == "auto":
            return os.cpu_count() or 1
        return int(self.workers)


class Backend(Section):
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    port: Port
    weight: Annotated[int, msgspec.Meta(ge=0, le=10000)] = 100
    # unset: the kernel's default; else a kernel algorithm, one of bpf/, or pacer
    congestion_control: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{1,15}$")] | None = None
    client_side: bool = False    # also set on client sockets this backend serves

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class Pool(Section):
    max_idle: Count = 100
    max_active: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    idle_timeout: Duration = Duration(60)
    max_requests_per_connection: Count = 1000     # 0 = no limit
    connect_timeout: Duration | None = None        # unset: timeouts.connect
    max_queue: Count = 1024                        # requests waiting per backend
    queue_timeout: Duration = Duration(5)


class Timeouts(Section):
    connect: Duration = Duration(2)   # TCP connect to a backend
    header: Duration = Duration(10)   # client must send a whole request head
    idle: Duration = Duration(60)     # no byte moved on a connection either way
    request: Duration = Duration(30)  # backend must start its response
    shutdown: Duration = Duration(30)  # grace for in-flight work after SIGTERM


class Limits(Section):
    header_bytes: Bytes = 64 * 1024      # request line + headers, per request
    headers: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    buffer: Bytes = 256 * 1024           # per direction, per connection
    connections: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10_000  # per worker


class Log(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    access: bool = True
    format: Literal["auto", "json", "console"] = "auto"
    summary: Duration = Duration(10)   # control process's periodic summary; 0 = off


class Admin(Section):
    socket: str = "/run/l7lb/admin.sock"
    mode: Annotated[str, msgspec.Meta(pattern=r"^0?[0-7]{3}$")] = "0600"
    group: Annotated[str, msgspec.Meta(min_length=1)] | None = None   # may use the socket too


class Pacer(Section):
    """The pure-Python AIMD pacer (dataplane/pacer.py)."""
    interval: Duration = Duration(0.1)      # 10ms to 10s
    start_rate: Rate = Rate(100e6)
    min_rate: Rate = Rate(1e6)
    max_rate: Rate = Rate(10e9)
    increase: Rate = Rate(10e6)        # added per interval while the path is clean
    decrease: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.7   # factor on congestion
    rtt_tolerance: Annotated[float, msgspec.Meta(ge=0, le=100)] = 1.0  # above min RTT, as a fraction


class Congestion(Section):
    bpf: Literal["auto", "off"] = "auto"     # off: BPF algorithms fall back to the pacer
    tunables: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    pacer: Pacer = msgspec.field(default_factory=Pacer)


class Config(Section):
    balancer: Balancer = msgspec.field(default_factory=Balancer)
    backends: list[Backend] = msgspec.field(default_factory=list)
    pool: Pool = msgspec.field(default_factory=Pool)
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    limits: Limits = msgspec.field(default_factory=Limits)
    log: Log = msgspec.field(default_factory=Log)
    admin: Admin = msgspec.field(default_factory=Admin)
    congestion: Congestion = msgspec.field(default_factory=Congestion)


def _decode_hook(kind: type, value: Any) -> Any:
    if kind in (Duration, Rate):
        return kind.parse(value)  # msgspec adds the key path to a ValueError
    raise NotImplementedError(kind)


class _DuplicateKey(Exception):
    def __init__(self, line: int, key: Any):
        super().__init__(line, key)
        self.line, self.key = line, key


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(key_node.start_mark.line + 1, key)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _line_index(node: yaml.Node | None, path: tuple = (), index: dict | None = None) -> dict:
    """Map every key path in the YAML tree to its 1-based line number."""
    index = {} if index is None else index
    if node is None:
        return index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            index[path + (key,)] = key_node.start_mark.line + 1
            _line_index(value_node, path + (key,), index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, path + (i,), index)
    return index


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")


def _split_path(text: str) -> tuple:
    """``.backends[0].port`` -> ("backends", 0, "port")"""
    parts: list = []
    for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", text):
        parts.append(key if key else int(index))
    return tuple(parts)


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _choices(path: tuple) -> list[str]:
    """The allowed words of the Literal field at ``path`` (for enum errors)."""
    kind: Any = Config
    for part in path:
        if isinstance(part, int):
            kind = typing.get_args(kind)[0]          # list[Backend] -> Backend
        else:
            kind = {f.name: f.type for f in msgspec.structs.fields(kind)}[part]
    options = (kind,) if typing.get_origin(kind) is Literal else typing.get_args(kind)
    return [str(word) for option in options if typing.get_origin(option) is Literal
            for word in typing.get_args(option)]


def _explain(exc: msgspec.ValidationError, lines: dict, source: str) -> ConfigError:
    match = _AT.match(str(exc))
    what, path = match.group("what"), _split_path(match.group("path") or "")
    if unknown := _UNKNOWN.match(what):
        path += (unknown.group("key"),)
        what = "unknown key"
    if what.startswith("Invalid enum value"):
        what = f"expected one of {', '.join(_choices(path))}; got {what.split(' value ', 1)[1]}"
    what = what.replace("Expected", "expected")
    line = lines.get(path)
    where = f"{source}:{line}" if line else source
    return ConfigError(f"{where}: {_dotted(path)}: {what}")


def _error(lines: dict, source: str, path: tuple, what: str) -> ConfigError:
    line = lines.get(path)
    where = f"{source}:{line}" if line else source
    return ConfigError(f"{where}: {_dotted(path)}: {what}")


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n ** 0.5) + 1))


def _check_balancer(config: Config, lines: dict, source: str) -> None:
    settings = config.balancer
    if not _is_prime(settings.maglev_table_size):
        raise _error(lines, source, ("balancer", "maglev_table_size"),
                     f"{settings.maglev_table_size} is not prime (65537, 655373 and 5000011 are)")
    if settings.resolve_interval < 1:
        raise _error(lines, source, ("balancer", "resolve_interval"), "must be at least 1s")


def _check_backends(config: Config, lines: dict, source: str) -> None:
    seen: dict[tuple[str, int], int] = {}
    for i, backend in enumerate(config.backends):
        key = (backend.host.lower(), backend.port)
        if key in seen:
            raise _error(lines, source, ("backends", i), f"duplicate backend {backend.name} "
                         f"(already backends[{seen[key]}])")
        seen[key] = i
        if backend.congestion_control is not None:
            try:
                check_algorithm(backend.congestion_control)
            except ValueError as exc:
                raise _error(lines, source, ("backends", i, "congestion_control"),
                             str(exc)) from None


def check_algorithm(name: str) -> None:
    """ValueError, listing what is available, unless a backend may ask for ``name``."""
    known = congestion_algorithms()
    if name not in known:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(known)}")


def congestion_algorithms() -> list[str]:
    """What ``congestion_control`` may name: the kernel's, ours from bpf/, pacer."""
    from .kernel.bpf_cc import ALGORITHMS
    from .kernel.tcp_info import kernel_algorithms
    return list(dict.fromkeys([*kernel_algorithms(), *ALGORITHMS, "pacer"]))


def _check_congestion(config: Config, lines: dict, source: str) -> None:
    from .kernel.bpf_cc import ALGORITHMS, check_tunable
    pacer = config.congestion.pacer
    if not 0.01 <= pacer.interval <= 10:
        raise _error(lines, source, ("congestion", "pacer", "interval"), "must be 10ms to 10s")
    if not pacer.min_rate <= pacer.start_rate <= pacer.max_rate:
        raise _error(lines, source, ("congestion", "pacer"),
                     "needs min_rate <= start_rate <= max_rate")
    for name, values in config.congestion.tunables.items():
        path = ("congestion", "tunables", name)
        if name not in ALGORITHMS:
            raise _error(lines, source, path,
                         f"no BPF algorithm {name!r}; ours are {', '.join(ALGORITHMS)}")
        for key, value in values.items():
            try:
                check_tunable(name, key, value)
            except ValueError as exc:
                raise _error(lines, source, path + (key,), str(exc)) from None


def parse(text: str, source: str = "<config>") -> Config:
    """Validate YAML text and return the configuration, or raise ConfigError."""
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKey as exc:
        raise ConfigError(f"{source}:{exc.line}: {exc.key}: duplicate key") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    lines = _line_index(node)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of sections")
    try:
        config = msgspec.convert(data, Config, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        raise _explain(exc, lines, source) from None
    _check_balancer(config, lines, source)
    _check_backends(config, lines, source)
    _check_congestion(config, lines, source)
    return config


def load(path: str) -> Config:
    """Read and validate a configuration file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse(text, path)
