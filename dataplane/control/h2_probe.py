"""Health probes over HTTP/2 (docs/health.md), on a connection already open
(and through TLS with ALPN h2 where the group uses it):

- ``h2`` (an h2/h2c group's default): the handshake; the backend's SETTINGS
  frame passes. A gRPC server resets a plain ``GET /``, so that cannot be the
  default there.
- ``http``: ``GET path``; its ``:status`` is judged as an HTTP/1.1 probe's.
- ``grpc``: ``grpc.health.v1.Health/Check`` for ``grpc_service`` ("" asks
  about the server as a whole); passes on grpc-status 0 with SERVING.

The frames are the balancer's own client codec's (http2/upstream_codec.py).
"""

from __future__ import annotations

import asyncio

from ..http2.hpack_codec import Headers
from ..http2.frames import ConnectionFailure
from ..http2.upstream_codec import UpstreamCodec

HEALTH_CHECK = b"/grpc.health.v1.Health/Check"
SERVING = 1                      # HealthCheckResponse.ServingStatus
_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_READ = 65536


class Answer:
    """What the backend sent on the probe's stream (upstream_codec.Responses)."""

    def __init__(self) -> None:
        self.settled = False
        self.status = 0
        self.fields: Headers = []      # the head's and the trailers' fields
        self.body = b""
        self.ended = False
        self.failure = ""

    def got_head(self, sid: int, block: Headers, ended: bool) -> None:
        self.status = int(block[0][1])
        self.fields += block[1:]
        self.ended = ended

    def got_body(self, sid: int, data: bytes, size: int, ended: bool) -> None:
        self.body += data
        self.ended = ended

    def got_trailers(self, sid: int, block: Headers) -> None:
        self.fields += block
        self.ended = True

    def got_reset(self, sid: int, code: int) -> None:
        self.failure = f"stream reset (HTTP/2 error code {code})"

    def got_window(self, sid: int) -> None:
        pass

    def got_goaway(self, last: int) -> None:
        if not self.ended:
            self.failure = "GOAWAY"

    def got_settings(self) -> None:
        self.settled = True


async def probe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str,
                scheme: bytes, path: str, authority: str, service: str,
                expect: tuple[tuple[int, int], ...]) -> tuple[bool, str]:
    answer = Answer()
    codec = UpstreamCodec(answer, stream_window=_READ, connection_window=_READ,
                          header_bytes=_READ)
    if kind == "grpc":
        sid = codec.request(_grpc_head(scheme, authority), False)
        codec.send_data(sid, grpc_message(service), True)
    elif kind == "http":
        codec.request([(b":method", b"GET"), (b":scheme", scheme),
                       (b":authority", authority.encode()), (b":path", path.encode()),
                       (b"user-agent", b"l7lb-health")], True)
    while True:
        writer.write(codec.take())
        if kind == "h2" and answer.settled:
            return True, "h2 handshake"
        if answer.failure:
            return False, answer.failure
        if kind == "http" and answer.status:
            return _judge_http(answer, expect)
        if answer.ended:
            return _judge_grpc(answer)
        data = await reader.read(_READ)
        if not data:
            return False, "closed before answering"
        try:
            codec.receive(data)
        except ConnectionFailure as failure:
            return False, f"HTTP/2: {failure}"


def _grpc_head(scheme: bytes, authority: str) -> Headers:
    return [(b":method", b"POST"), (b":scheme", scheme), (b":authority", authority.encode()),
            (b":path", HEALTH_CHECK), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"), (b"user-agent", b"l7lb-health")]


def grpc_message(service: str) -> bytes:
    """A HealthCheckRequest (field 1: service) in gRPC's length-prefixed frame."""
    name = service.encode()
    proto = b"\x0a" + _varint(len(name)) + name if name else b""
    return b"\x00" + len(proto).to_bytes(4, "big") + proto


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def serving_status(body: bytes) -> int:
    """HealthCheckResponse.status (field 1, a varint) of the first message; 0 if absent."""
    proto = body[5:5 + int.from_bytes(body[1:5], "big")] if len(body) >= 5 else b""
    if len(proto) >= 2 and proto[0] == 0x08:
        return proto[1] & 0x7F
    return 0


def _judge_grpc(answer: Answer) -> tuple[bool, str]:
    status = dict(answer.fields).get(b"grpc-status")
    if status != b"0":
        return False, f"grpc-status {(status or b'none').decode(errors='replace')}"
    serving = serving_status(answer.body)
    return serving == SERVING, _NAMES.get(serving, str(serving))


def _judge_http(answer: Answer, expect: tuple[tuple[int, int], ...]) -> tuple[bool, str]:
    status = answer.status
    return any(low <= status <= high for low, high in expect), str(status)
