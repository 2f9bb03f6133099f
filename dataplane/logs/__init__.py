"""Logging with structlog: JSON lines when stdout is not a terminal, readable
console lines when it is (``log.format`` overrides).

A busy balancer writes one access line per request, so the output is kept in
a 64 KiB buffer that the worker's timer tick flushes (every 250 ms at most,
and at exit) instead of paying one write(2) per line; on a terminal every
line is written at once. Access lines of HTTP requests in JSON come
preformatted as bytes (access.py) and go straight into that buffer.

With ``log.file`` the lines go to that file (appended, shared by the control
process and its workers); SIGUSR1 makes every process reopen it, for logrotate.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from typing import Any, BinaryIO, Callable, TextIO, cast

import msgspec
import structlog

from ..config import LogSettings

BUFFER = 64 * 1024
_output: list[TextIO | BinaryIO] = []
_file: list[str] = []          # log.file's path when set, for reopen()
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
class _Second:
    """The last whole second and its ISO-8601 text, as str and as bytes."""
    __slots__ = ("at", "text", "raw")

    def __init__(self) -> None:
        self.at, self.text, self.raw = -1, "", b""


_second = _Second()


def _fallback(value: object) -> object:
    """Anything msgspec cannot encode is logged as float or text, never raised."""
    return float(value) if isinstance(value, float) else str(value)


_encode = msgspec.json.Encoder(enc_hook=_fallback).encode


def _json(event: dict[str, Any], **_: object) -> str:
    return _encode(event).decode()


def _add_pid(_logger: object, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    event["pid"] = _pid[0]     # getpid() is a system call on every line otherwise
    return event


def _add_timestamp(_logger: object, _name: str, event: dict[str, object]) -> dict[str, object]:
    """UTC ISO-8601 with microseconds; the date part is formatted once a second."""
    second, micros = timestamp(time.time())
    event["timestamp"] = f"{second}.{micros:06d}Z"
    return event


class _BufferedLogger:
    """structlog's WriteLogger flushes after every line; this one leaves that to flush()."""

    def __init__(self, stream: BinaryIO) -> None:
        self._write = stream.write

    def msg(self, message: str) -> None:
        self._write((message + "\n").encode())

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _logger_factory(text: TextIO, binary: BinaryIO | None) -> Callable[..., object]:
    if binary is None:
        return lambda *_: structlog.WriteLogger(text)
    return lambda *_: _BufferedLogger(binary)


def setup(settings: LogSettings, stream: TextIO | None = None) -> None:
    """Configure structlog; with ``log.file`` set, open it (OSError when it cannot be)."""
    _file[:] = [settings.file] if settings.file else []
    text = stream or sys.stdout
    tty = not settings.file and text.isatty()
    fmt = settings.format if settings.format != "auto" else ("console" if tty else "json")
    binary: BinaryIO | None = None       # a terminal gets text, written line by line
    if settings.file:
        binary = open(_open_file(settings.file), "ab", buffering=BUFFER)
    elif not tty:
        binary = open(text.fileno(), "wb", buffering=BUFFER, closefd=False)
    out: TextIO | BinaryIO = text if binary is None else binary
    _output[:] = [out]
    access.json_stream = out if fmt == "json" and settings.level in ("debug", "info") \
        and isinstance(out, io.BufferedWriter) else None
    processors: list[Callable[..., Any]] = [structlog.processors.add_log_level, _add_timestamp, _add_pid]
    if fmt == "json":
        processors += [structlog.processors.dict_tracebacks,
                       structlog.processors.JSONRenderer(serializer=_json)]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=tty))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.level.upper()]),
        logger_factory=_logger_factory(text, binary),
        cache_logger_on_first_use=True,
    )


class _AccessLog:
    """One line per request or connection. In JSON mode it is encoded here
    directly (the same fields structlog would write), or taken preformatted
    (``write``), which costs a fraction of the processor chain."""

    def __init__(self) -> None:
        self.json_stream: BinaryIO | None = None
        self.fallback = structlog.get_logger("l7lb.access")

    def __call__(self, event: str, fields: dict[str, object]) -> None:
        stream = self.json_stream
        if stream is None:
            self.fallback.info(event, **fields)
            return
        fields["event"] = event
        fields["level"] = "info"
        _add_timestamp(None, "", fields)
        fields["pid"] = _pid[0]
        stream.write(_encode(fields) + b"\n")

    @staticmethod
    def text(line: str) -> None:
        """A text access line (log.access_format), written as it is."""
        out = _output[0] if _output else sys.stdout
        if isinstance(out, io.BufferedWriter):
            out.write(line.encode() + b"\n")
        else:
            text = cast(TextIO, out)
            text.write(line + "\n")
            text.flush()       # a terminal: each line at once


access = _AccessLog()


def pid() -> int:
    return _pid[0]


def _whole_second(now: float) -> int:
    """Make the ISO-8601 text of ``now``'s whole second, once a second."""
    second = int(now)
    if second != _second.at:
        _second.at, _second.text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second.raw = _second.text.encode()
    return second


def timestamp(now: float) -> tuple[str, int]:
    """A wall-clock time as its whole second's ISO-8601 text and its microseconds."""
    second = _whole_second(now)
    return _second.text, int((now - second) * 1e6)


def timestamp_bytes(now: float) -> tuple[bytes, int]:
    """The same with the text as bytes (access lines)."""
    second = _whole_second(now)
    return _second.raw, int((now - second) * 1e6)


def _open_file(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


def reopen() -> None:
    """SIGUSR1: open ``log.file`` again at its path (logrotate moved the old
    one away). The new file takes the old descriptor's number, so every stream
    writing there follows; when it cannot be opened, the old file is kept."""
    if not _file:
        return
    flush()
    try:
        fd = _open_file(_file[0])
    except OSError as exc:
        structlog.get_logger("l7lb").error(
            "cannot reopen the log file, still writing to the old one", error=str(exc))
        return
    os.dup2(fd, _output[0].fileno(), inheritable=False)
    os.close(fd)
    structlog.get_logger("l7lb").info("log file reopened", path=_file[0])


def flush() -> None:
    for stream in _output:
        try:
            stream.flush()
        except (OSError, ValueError):
            pass    # stdout gone (closed pipe): logging must never stop the proxy
