"""The access log line of each HTTP request (``log.access``).

In JSON (the format when output is not a terminal) a line is made as bytes
in one formatting step, from pieces made once per connection (the client's
address and TLS fields) and once per route and backend name, and goes into
the log's 64 KiB buffer, which the worker's timer tick writes out: no
dictionary, no encoder, no write(2) per request. Other formats go through
structlog with the same fields.

Fields: ``client``, ``proto`` (http/1.1, h2, h2c), ``tls``/``cipher``/``sni`` over TLS, ``method``, ``path``
(as sent on, after a route's rewrite), ``status``, ``backend`` (null when
none was chosen), ``bytes_in``, ``bytes_out``, ``ms``, ``request_id``
when request IDs are on, ``route`` and ``cluster`` when a route took the
request, ``error`` when there was one, then ``event``, ``level``,
``timestamp`` and ``pid`` as in every line.

``log.access_format`` other than json writes text lines instead
(access_text.py); ``access_log`` makes the one the settings ask for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

import msgspec

from .. import logs
from ..config.access_format import parse, template_of
from .access_text import Details, TextAccessLog

if TYPE_CHECKING:
    from ..config import LogSettings

_json = msgspec.json.Encoder().encode
_now = time.time
_LINE = (b'%b,"method":"%b","path":%b,"status":%d,"backend":%b,"bytes_in":%d,'
         b'"bytes_out":%d,"ms":%.2f,"request_id":"%b"%b,"event":"request","level":"info",'
         b'"timestamp":"%b.%06dZ","pid":')
_NAMES_KEPT = 4096        # backend and route names whose JSON is remembered


class AccessLog(Protocol):
    """Where a worker's requests are logged, one line each."""
    def prefix(self, client: bytes, protocol: str, tls: dict[str, str | None] | None,
               port: int) -> bytes: ...

    def request(self, prefix: bytes, method: bytes, target: bytes, status: int, backend: str,
                bytes_in: int, bytes_out: int, ms: float, error: str, route: str | None,
                cluster: str | None, request_id: bytes, details: Details) -> None: ...


def access_log(settings: "LogSettings", request_ids: bool) -> AccessLog | None:
    """The access log ``log.access`` and ``log.access_format`` ask for."""
    if not settings.access:
        return None
    if settings.access_format == "json":
        return JsonAccessLog(request_ids)
    return TextAccessLog(parse(template_of(settings.access_format)))


class JsonAccessLog:
    """One worker's access lines in JSON (made in the worker: its pid is in them)."""

    def __init__(self, request_ids: bool = True) -> None:
        self.names: dict[str, bytes] = {}
        line = _LINE if request_ids else _LINE.replace(b',"request_id":"%b"', b"%.0b")
        self.line = line + b"%d}\n" % logs.pid()
        self.second = -1           # the whole second last written, and its text
        self.second_text = b""

    @staticmethod
    def prefix(client: bytes, protocol: str, tls: dict[str, str | None] | None,
               port: int = 0) -> bytes:
        """A connection's part of each line: the client, its protocol and its
        TLS fields."""
        fields: dict[str, object] = {"client": client.decode(), "proto": protocol}
        if tls is not None:
            fields.update(tls)
        return _json(fields)[:-1]

    def request(self, prefix: bytes, method: bytes, target: bytes, status: int, backend: str,
                bytes_in: int, bytes_out: int, ms: float, error: str = "",
                route: str | None = None, cluster: str | None = None,
                request_id: bytes = b"", details: Details | None = None) -> None:
        stream = logs.access.json_stream
        if stream is None:
            self._structured(prefix, method, target, status, backend, bytes_in, bytes_out, ms,
                             error, route, cluster, request_id)
            return
        extra = b""
        if route is not None:
            extra = b',"route":%b,"cluster":%b' % (self._name(route), self._name(cluster or ""))
        if error:
            extra += b',"error":' + _json(error)
        now = _now()
        second = int(now)
        if second != self.second:
            self.second, self.second_text = second, logs.timestamp_bytes(now)[0]
        # ASCII without '"' (34) or '\\' (92) is its own JSON string (llhttp
        # lets no control byte through).
        path = b'"%b"' % target if target.isascii() and 34 not in target \
            and 92 not in target else _json(target.decode("latin-1"))
        name = self.names.get(backend) or self._name(backend) if backend else b"null"
        stream.write(self.line % (prefix, method, path, status, name, bytes_in, bytes_out, ms,
                                  request_id, extra, self.second_text,
                                  int((now - second) * 1e6)))

    def _name(self, name: str) -> bytes:
        """A name's JSON string, made once (names come from the configuration)."""
        text = self.names.get(name)
        if text is None:
            if len(self.names) >= _NAMES_KEPT:
                self.names.clear()
            text = self.names[name] = _json(name)
        return text

    @staticmethod
    def _structured(prefix: bytes, method: bytes, target: bytes, status: int, backend: str,
                    bytes_in: int, bytes_out: int, ms: float, error: str,
                    route: str | None, cluster: str | None, request_id: bytes) -> None:
        fields = msgspec.json.decode(prefix + b"}")
        fields.update({"method": method.decode(), "path": target.decode("latin-1"),
                       "status": status, "backend": backend or None, "bytes_in": bytes_in,
                       "bytes_out": bytes_out, "ms": round(ms, 2)})
        if request_id:
            fields["request_id"] = request_id.decode("latin-1")
        if route is not None:
            fields["route"], fields["cluster"] = route, cluster
        if error:
            fields["error"] = error
        logs.access("request", fields)
