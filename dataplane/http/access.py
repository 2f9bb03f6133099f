"""The access log line of one HTTP request (``log.access``)."""

from __future__ import annotations

from .. import logs


def access_line(client: bytes, method: bytes, target: bytes, status: int, backend: str,
                bytes_in: int, bytes_out: int, ms: float, error: str,
                route: str | None = None, cluster: str | None = None,
                tls: dict | None = None) -> None:
    fields = {"client": client.decode(), "method": method.decode(),
              "path": target.decode("latin-1"), "status": status, "backend": backend or None,
              "bytes_in": bytes_in, "bytes_out": bytes_out, "ms": ms}
    if route is not None:
        fields["route"], fields["cluster"] = route, cluster
    if tls is not None:
        fields.update(tls)
    if error:
        fields["error"] = error
    logs.access("request", fields)
