"""Logging with structlog: JSON lines when stdout is not a terminal, readable
console lines when it is (``log.format`` overrides)."""

from __future__ import annotations

import logging
import os
import sys

import msgspec
import structlog

from .config import Log

def _fallback(value: object) -> object:
    """Anything msgspec cannot encode is logged as float or text, never raised."""
    return float(value) if isinstance(value, float) else str(value)


_encode = msgspec.json.Encoder(enc_hook=_fallback).encode


def _json(event: dict, **_: object) -> str:
    return _encode(event).decode()


def _add_pid(_logger: object, _name: str, event: dict) -> dict:
    event["pid"] = os.getpid()
    return event


def setup(settings: Log, stream=None) -> None:
    stream = stream or sys.stdout
    fmt = settings.format
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    processors: list = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_pid,
    ]
    if fmt == "json":
        processors += [structlog.processors.dict_tracebacks,
                       structlog.processors.JSONRenderer(serializer=_json)]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.level.upper()]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
