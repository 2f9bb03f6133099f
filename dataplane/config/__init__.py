"""Configuration: the YAML schema (schema.py), its defaults, and validation
with clear errors (errors.py, checks.py).

A file is checked as a whole before anything starts. Every problem is reported
as one line, ``FILE:LINE: key.path: what is wrong``, and callers exit with
code 2 (see ``lbctl check``). Defaults and limits are listed in docs/config.md.
"""

from __future__ import annotations

import msgspec
import yaml
from typing import Any

from .checks import check_algorithm, congestion_algorithms, run_checks, warnings
from .errors import ConfigError, DuplicateKey, Lines, StrictLoader, explain, line_index
from .model import DEFAULT, Config, backend_key
from .routes import GroupSettings, RouteSettings
from .schema import (GRPC_STATUSES, AdminSettings, BackendSettings, BalancerSettings,
                     BreakerSettings, CertificateSettings, CongestionSettings, HealthSettings,
                     LimitSettings, LogSettings, PacerSettings, PoolSettings, RequestIdSettings,
                     RetrySettings, TimeoutSettings, TracingSettings)
from .units import Duration, Rate

__all__ = ["DEFAULT", "GRPC_STATUSES", "AdminSettings", "BackendSettings", "BalancerSettings",
           "BreakerSettings", "CertificateSettings", "Config", "ConfigError", "CongestionSettings", "Duration",
           "GroupSettings", "HealthSettings", "LimitSettings", "LogSettings", "PacerSettings",
           "PoolSettings", "Rate", "RequestIdSettings", "RetrySettings", "RouteSettings",
           "TimeoutSettings", "TracingSettings",
           "backend_key", "check_algorithm", "congestion_algorithms", "decode_certificates",
           "decode_routes", "encode_routes", "load", "parse", "warnings"]


def _decode_hook(kind: type, value: Any) -> Any:
    if kind in (Duration, Rate):
        return kind.parse(value)  # msgspec adds the key path to a ValueError
    raise NotImplementedError(kind)


def parse(text: str, source: str = "<config>") -> Config:
    """Validate YAML text and return the configuration, or raise ConfigError."""
    try:
        node = yaml.compose(text, Loader=StrictLoader)
        data = yaml.load(text, Loader=StrictLoader)
    except DuplicateKey as exc:
        raise ConfigError(f"{source}:{exc.line}: {exc.key}: duplicate key") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    lines = line_index(node)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of sections")
    _check_groups(data.get("clusters"), lines, source)
    try:
        config = msgspec.convert(data, Config, dec_hook=_decode_hook)
        config.merge_groups(data.get("clusters") or {},
                            lambda merged, kind: msgspec.convert(merged, kind,
                                                                 dec_hook=_decode_hook))
    except msgspec.ValidationError as exc:
        raise explain(exc, lines, source) from None
    run_checks(config, lines, source)
    return config


def _check_groups(groups: Any, lines: Lines, source: str) -> None:
    """Each group on its own first, so that an error names its group."""
    if not isinstance(groups, dict):
        return
    for name, raw in groups.items():
        try:
            msgspec.convert(raw, GroupSettings, dec_hook=_decode_hook)
        except msgspec.ValidationError as exc:
            raise explain(exc, lines, source, ("clusters", name)) from None


def encode_routes(config: Config) -> bytes:
    """``routes`` and ``routes_default`` as bytes, for the workers' snapshots."""
    return msgspec.msgpack.encode({"routes": msgspec.to_builtins(config.routes, enc_hook=float),
                                   "default": config.routes_default})


def decode_routes(raw: bytes) -> tuple[list[RouteSettings], str]:
    data = msgspec.msgpack.decode(raw)
    return (msgspec.convert(data["routes"], list[RouteSettings], dec_hook=_decode_hook),
            data["default"])


def decode_certificates(raw: bytes) -> list[CertificateSettings]:
    return msgspec.convert(msgspec.msgpack.decode(raw)["certificates"], list[CertificateSettings])


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
