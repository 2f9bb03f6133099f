"""Access lines as text (``log.access_format``: httplog, combined or a
template; dataplane/config/access_format.py parses them): one line per HTTP
request, written to the log's output as it is, never through structlog.

A template becomes a list of small functions, one per part, joined per
request. Values are written as they are, except that a byte outside
printable ASCII, a double quote and a backslash become ``\\xHH`` (as nginx
escapes its variables), so a line always stays one line and quoted fields
stay quoted.
"""

from __future__ import annotations

import re
import time
from typing import Callable, Protocol

from .. import logs
from ..config.access_format import Part


class Kind(Protocol):
    """How a request ended (upstream.outcome.ErrorKind)."""
    @property
    def value(self) -> str: ...


class Details(Protocol):
    """What a text line needs of a request beyond the JSON line's fields."""
    request_id: bytes
    forward: bytes       # the head as sent upstream (its headers)
    started: float       # monotonic: the head was read
    @property
    def sent_at(self) -> float: ...   # monotonic: last sent upstream (0: never)
    sends: int           # tries
    @property
    def kind(self) -> Kind: ...
    version: str         # the client's HTTP version ("1.1")


class Request:
    """One request's values while its line is made."""
    __slots__ = ("connection", "method", "target", "status", "backend", "bytes_in",
                 "bytes_out", "ms", "error", "route", "cluster", "request_id", "details", "now")

    def __init__(self, connection: list[str], method: bytes, target: bytes, status: int,
                 backend: str, bytes_in: int, bytes_out: int, ms: float, error: str,
                 route: str | None, cluster: str | None, request_id: bytes,
                 details: Details) -> None:
        self.connection, self.method, self.target, self.status = connection, method, target, status
        self.backend, self.bytes_in, self.bytes_out, self.ms = backend, bytes_in, bytes_out, ms
        self.error, self.route, self.cluster = error, route, cluster
        self.request_id, self.details, self.now = request_id, details, time.time()

    def at(self) -> float:
        """When the request's head had been read (wall clock)."""
        return self.now - self.ms / 1000


Render = Callable[[Request], str]
_UNSAFE = re.compile(rb'[^\x20-\x7e]|["\\]')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Connection fields, in the prefix's order.
CLIENT, PORT, PROTOCOL, TLS, CIPHER, SNI = range(6)


def safe(value: bytes | str) -> str:
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    return _UNSAFE.sub(lambda match: b"\\x%02X" % match.group()[0], raw).decode("ascii")


def _date(now: float, nginx: bool) -> str:
    t = time.gmtime(now)
    text = "%02d/%s/%04d:%02d:%02d:%02d" % (t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
                                           t.tm_hour, t.tm_min, t.tm_sec)
    return text + " +0000" if nginx else "%s.%03d" % (text, int(now * 1000) % 1000)


def _version(r: Request) -> str:
    return "HTTP/2.0" if r.connection[PROTOCOL].startswith("h2") else "HTTP/" + r.details.version


def _sent_ms(r: Request) -> float:
    """ms from the head to the request sent upstream (0 on the lane)."""
    sent = r.details.sent_at
    return max(0.0, (sent - r.details.started) * 1000) if sent else 0.0


def _header(name: str) -> Render:
    pattern = re.compile(rb"\r\n" + re.escape(name.encode()) + rb":[ \t]*([^\r]*)", re.I)

    def render(r: Request) -> str:
        found = pattern.search(r.details.forward)
        return safe(found.group(1)) if found and found.group(1) else "-"
    return render


# HAProxy's termination state: who ended it, and in which phase (by ErrorKind).
_STATE = {
    "none": "--", "connect_refused": "SC", "connect_timeout": "sC",
    "connect_error": "SC", "reset_before_response": "SH",
    "closed_before_response": "SH", "reset_mid_response": "SD",
    "response_timeout": "sH", "backend_idle": "sD",
    "total_timeout": "sH", "client_timeout": "cD", "host_down": "SC",
    "bad_response": "PH", "queue_timeout": "sQ", "pool_full": "RQ",
    "overloaded": "RQ", "no_host": "SC", "client_aborted": "CD",
    "relay_failed": "ID", "refused_by_status": "SH",
}

_RENDERS: dict[str, Render] = {
    "ci": lambda r: r.connection[CLIENT], "cp": lambda r: r.connection[PORT],
    "pr": lambda r: r.connection[PROTOCOL],
    "ft": lambda r: "l7lb~" if r.connection[TLS] != "-" else "l7lb",
    "tr": lambda r: _date(r.at(), False), "tl": lambda r: _date(r.at(), True),
    "ts": lambda r: "%s.%06dZ" % logs.timestamp(r.at()),
    "b": lambda r: safe(r.cluster or "default"), "s": lambda r: r.backend or "<NOSRV>",
    "rt": lambda r: safe(r.route) if r.route else "-",
    "TR": lambda r: "0", "Tw": lambda r: "0",
    "Tc": lambda r: "%d" % _sent_ms(r),
    "Tr": lambda r: "%d" % max(0.0, r.ms - _sent_ms(r)),
    "Ta": lambda r: "%d" % r.ms, "Tt": lambda r: "%d" % r.ms,
    "ST": lambda r: "%d" % r.status, "B": lambda r: "%d" % r.bytes_out,
    "U": lambda r: "%d" % r.bytes_in,
    "tsc": lambda r: _STATE.get(r.details.kind.value, "--") + "--",
    "rc": lambda r: "%d" % max(0, r.details.sends - 1),
    "ec": lambda r: safe(r.error) if r.error else "-",
    "r": lambda r: "%s %s %s" % (safe(r.method), safe(r.target), _version(r)),
    "HM": lambda r: safe(r.method), "HU": lambda r: safe(r.target), "HV": _version,
    "ID": lambda r: r.request_id.decode("latin-1") or "-",
    "sslv": lambda r: r.connection[TLS], "sslc": lambda r: r.connection[CIPHER],
    "sni": lambda r: r.connection[SNI], "pid": lambda r: "%d" % logs.pid(),
}


def _literal(text: str) -> Render:
    return lambda _r: text


def compile_parts(parts: list[Part]) -> list[Render]:
    renders: list[Render] = []
    for part in parts:
        if isinstance(part, str):
            renders.append(_literal(part))
        elif part[0] == "i":
            renders.append(_header(part[1]))
        else:
            renders.append(_RENDERS[part[0]])
    return renders


class TextAccessLog:
    """One worker's access lines in a text format."""

    def __init__(self, parts: list[Part]) -> None:
        self.renders = compile_parts(parts)

    @staticmethod
    def prefix(client: bytes, protocol: str, tls: dict[str, str | None] | None,
               port: int = 0) -> bytes:
        """A connection's fields, NUL-separated in the order CLIENT...SNI."""
        tls = tls or {}
        fields = [client.decode(), str(port), protocol] + \
            [safe(tls.get(key) or "-") for key in ("tls", "cipher", "sni")]
        return "\0".join(fields).encode()

    def request(self, prefix: bytes, method: bytes, target: bytes, status: int, backend: str,
                bytes_in: int, bytes_out: int, ms: float, error: str, route: str | None,
                cluster: str | None, request_id: bytes, details: Details) -> None:
        r = Request(prefix.decode().split("\0"), method, target, status, backend, bytes_in,
                    bytes_out, ms, error, route, cluster, request_id, details)
        logs.access.text("".join([render(r) for render in self.renders]))
