"""etcd v3 through its JSON gateway (``/v3/...``, the same API as gRPC with
base64 keys and values), over httpx: no gRPC threads in a process that forks
its workers, TLS and user/password auth from the standard library's ssl.

Each request goes to the current endpoint, and on a connection failure to
the next; an error names the endpoint. A watch is one streamed response of
newline-separated JSON results.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import httpx

from ..config.schema import FleetTlsSettings


class EtcdError(Exception):
    """etcd cannot be reached or refused a request."""


class Compacted(EtcdError):
    """A watch started before etcd's compaction: read everything again."""


class KeyValue(NamedTuple):
    key: str
    value: bytes
    mod_revision: int


class WatchEvent(NamedTuple):
    deleted: bool
    kv: KeyValue


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _range_end(prefix: str) -> str:
    """The key just past every key that starts with ``prefix``."""
    raw = prefix.encode()
    return _b64(raw[:-1] + bytes([raw[-1] + 1]))


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(base64.b64decode(raw["key"]).decode(),
                    base64.b64decode(raw.get("value", "")), int(raw.get("mod_revision", 0)))


def _tls(tls: FleetTlsSettings | None) -> ssl.SSLContext | bool:
    if tls is None:
        return True
    context = ssl.create_default_context(cafile=tls.ca)
    if tls.cert:
        context.load_cert_chain(tls.cert, tls.key)
    return context


# -- transaction parts ----------------------------------------------------------
def unchanged_since(key: str, mod_revision: int) -> dict[str, Any]:
    """Compare: the key was last written at ``mod_revision`` (0: it does not exist)."""
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision}


def put_op(key: str, value: bytes) -> dict[str, Any]:
    return {"request_put": {"key": _b64(key), "value": _b64(value)}}


def delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


class Etcd:
    def __init__(self, endpoints: list[str], timeout: float, user: str | None = None,
                 password: str | None = None, tls: FleetTlsSettings | None = None) -> None:
        self.endpoints = [url.rstrip("/") for url in endpoints]
        self.at = 0
        self.timeout = timeout
        self.user, self.password = user, password
        self.token: str | None = None
        self.http = httpx.AsyncClient(verify=_tls(tls), timeout=timeout)

    @property
    def endpoint(self) -> str:
        return self.endpoints[self.at]

    async def close(self) -> None:
        await self.http.aclose()

    # -- requests --------------------------------------------------------------
    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        failures = []
        for _ in self.endpoints:
            try:
                return await self._post(path, body)
            except httpx.TransportError as exc:
                failures.append(f"{self.endpoint}: {exc.__class__.__name__} {exc}".strip())
                self.at = (self.at + 1) % len(self.endpoints)
        raise EtcdError("; ".join(failures))

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.user is not None and self.token is None:
            await self._authenticate()
        response = await self.http.post(self.endpoint + path, json=body, headers=self._headers())
        if response.status_code == 401 and self.user is not None:     # token expired
            await self._authenticate()
            response = await self.http.post(self.endpoint + path, json=body,
                                            headers=self._headers())
        data = _json(response)
        if response.status_code != 200 or "error" in data:
            raise EtcdError(f"{self.endpoint}{path}: {_detail(response, data)}")
        return data

    async def _authenticate(self) -> None:
        response = await self.http.post(self.endpoint + "/v3/auth/authenticate",
                                        json={"name": self.user, "password": self.password})
        data = _json(response)
        if response.status_code != 200 or "token" not in data:
            raise EtcdError(f"{self.endpoint}: authentication as {self.user} failed: "
                            f"{_detail(response, data)}")
        self.token = data["token"]

    def _headers(self) -> dict[str, Any]:
        return {"Authorization": self.token} if self.token else {}

    # -- the operations the fleet uses -------------------------------------------
    async def grant(self, ttl: int) -> int:
        return int((await self.call("/v3/lease/grant", {"TTL": ttl}))["ID"])

    async def keep_alive(self, lease: int) -> int:
        """Renew a lease once; its remaining TTL (0: it expired)."""
        result = (await self.call("/v3/lease/keepalive", {"ID": lease})).get("result", {})
        return int(result.get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self.call("/v3/lease/revoke", {"ID": lease})

    async def put(self, key: str, value: bytes, lease: int = 0) -> None:
        body: dict[str, str | int] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        await self.call("/v3/kv/put", body)

    async def delete(self, key: str) -> None:
        await self.call("/v3/kv/deleterange", {"key": _b64(key)})

    async def read_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        """Every key under ``prefix`` and the revision they were read at."""
        data = await self.call("/v3/kv/range", {"key": _b64(prefix),
                                                "range_end": _range_end(prefix)})
        return int(data["header"]["revision"]), [_kv(raw) for raw in data.get("kvs", [])]

    async def transaction(self, compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> bool:
        """Apply ``success`` if every comparison holds; whether it did."""
        data = await self.call("/v3/kv/txn", {"compare": compare, "success": success})
        return bool(data.get("succeeded"))

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        """Changes under ``prefix`` from ``start_revision`` on, batch by batch.
        Raises Compacted when that revision is gone, EtcdError when the stream ends."""
        body = {"create_request": {"key": _b64(prefix), "range_end": _range_end(prefix),
                                   "start_revision": start_revision}}
        try:
            async with self.http.stream(
                    "POST", self.endpoint + "/v3/watch", json=body, headers=self._headers(),
                    timeout=httpx.Timeout(self.timeout, read=None)) as response:
                if response.status_code != 200:
                    raise EtcdError(f"{self.endpoint}/v3/watch: {response.status_code}")
                async for line in response.aiter_lines():
                    if line.strip():
                        events = _watch_result(json.loads(line))
                        if events:
                            yield events
        except httpx.TransportError as exc:
            self.at = (self.at + 1) % len(self.endpoints)
            raise EtcdError(f"watch: {exc.__class__.__name__} {exc}".strip()) from None
        raise EtcdError(f"{self.endpoint}: the watch stream ended")


def _json(response: httpx.Response) -> dict[str, Any]:
    """The body as JSON; {} when it is not (etcd answers some errors in text)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _detail(response: httpx.Response, data: dict[str, Any]) -> str:
    text = data.get("message") or data.get("error") or response.text.strip()[:200]
    return f"{response.status_code} {text}".strip()


def _watch_result(data: dict[str, Any]) -> list[WatchEvent]:
    if "error" in data:
        raise EtcdError(f"watch: {data['error'].get('message', data['error'])}")
    result = data.get("result", {})
    if int(result.get("compact_revision", 0)):
        raise Compacted(f"revision {result['compact_revision']} compacted")
    if result.get("canceled"):
        raise EtcdError(f"watch canceled: {result.get('cancel_reason', '')}")
    return [WatchEvent(raw.get("type") == "DELETE", _kv(raw["kv"]))
            for raw in result.get("events", [])]
