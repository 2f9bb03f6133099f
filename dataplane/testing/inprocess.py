"""A real Worker in one process, its connections on stand-in transports: for
measuring the request path's own cost (scripts/request-cost) and for
feeding the fast lane and the general path the same bytes
(tests/test_lane.py). Nothing here touches a network: descriptors come
from socketpair(2), and the upstream connections are pooled ones that only
record what is written to them.

Each client connection is fed reads; what it writes upstream and to the
client is recorded, with how each connection ended (closed, reset,
half-closed), so two runs can be compared byte for byte.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any, cast

import uvloop

from ..channel.link import Link
from ..channel.messages import BackendState
from ..config import parse
from ..http.client import ClientConnection
from ..http.request_id import POOL
from ..io.stream import Stream
from ..upstream.connection import UpstreamConnection
from ..worker.process import Worker

BACKEND = ("198.18.0.4", 8000)
CLIENT = "198.18.0.2"
CONFIG = """
balancer: {{port: 8080, bind: 198.18.0.3, workers: 1}}
backends: [{{host: {host}, port: {port}}}]
pool: {{max_requests_per_connection: 0}}
log: {{access: {access}, level: info, summary: 0}}
admin: {{socket: /nonexistent/l7lb-inprocess.sock}}
{extra}"""


class StandIn(asyncio.Transport):
    """A transport that records what is written and how it ends. Its socket
    (one end of a socketpair, only for its descriptor) closes with it."""

    def __init__(self) -> None:
        super().__init__()
        self.sock, self.far = socket.socketpair()
        self.written: list[bytes] = []
        self.ended: list[str] = []        # "eof" (half-close), "close", "abort"
        self.paused = False

    def take(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        pass

    def is_closing(self) -> bool:
        return bool(self.ended)

    def abort(self) -> None:
        self.ended.append("abort")
        self._release()

    def close(self) -> None:
        self.ended.append("close")
        self._release()

    def _release(self) -> None:
        self.sock.close()
        self.far.close()

    def write_eof(self) -> None:
        self.ended.append("eof")


class Client:
    """One client connection of the worker on a stand-in transport."""

    def __init__(self, worker: Worker) -> None:
        self.transport = StandIn()
        self.stream = Stream()
        self.stream.connection_made(self.transport)
        self.connection = ClientConnection(worker, self.stream, CLIENT)

    def send(self, data: bytes) -> None:
        self.connection.on_data(data)


class InProcess:
    """A worker with one backend whose pool always has an idle stand-in
    connection to offer (``upstream``)."""

    def __init__(self, lane: bool = True, access: bool = False, extra: str = "",
                 access_stream: Any = None) -> None:
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        config = parse(CONFIG.format(host=BACKEND[0], port=BACKEND[1],
                                     access="true" if access else "false", extra=extra))
        self.listener = StandIn()      # never listens: the harness hands connections in
        # The parts of a Link a worker uses without start(), standing in.
        self.worker = Worker(config, self.loop, [self.listener.sock], cast(Link, _NoControl()))
        self.worker.lane = lane
        self.cluster = cluster = self.worker.default
        cluster.update([BackendState(BACKEND[0], BACKEND[1], 100, health="up")], resolve=False)
        self.host = cluster.hosts[0]
        # A connection the worker opens itself (a reconnect, say) must fail at
        # once and never leave the machine: its address is a bound socket that
        # does not listen, so the kernel refuses the connect.
        self.refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.refuser.bind(("127.0.0.1", 0))
        self.host.set_address(socket.AF_INET, self.refuser.getsockname())
        cluster.choice.refresh()
        self.upstreams: list[tuple[UpstreamConnection, StandIn]] = []

    def reset(self) -> None:
        """The backend as at the start: up, its breaker closed, nothing counted."""
        host = self.host
        host.health, host.breaker, host.failures, host.own_breaker = "up", "closed", 0, None
        host.marks.clear()
        host.marks_counted = 0
        self.cluster.choice.refresh()
        ids = self.worker.request_ids
        if ids is not None:                 # the same IDs in the same order
            made = random.Random(0).randbytes(16 * POOL).hex().encode()
            ids.pool = [made[at:at + 32] for at in range(0, len(made), 32)]

    def idle_upstream(self) -> tuple[UpstreamConnection, StandIn]:
        """Make sure the pool has an idle connection (a request never connects)."""
        slot = self.cluster.pool.of(self.host)
        if slot.idle:
            conn = slot.idle[-1]
            return conn, self._transport_of(conn)
        slot.open += 1
        transport = StandIn()
        conn = UpstreamConnection(self.cluster.pool, slot, transport.sock)
        conn.stream.connection_made(transport)
        self.upstreams.append((conn, transport))
        self.cluster.give_back(conn, self.worker.clock.now)
        return conn, transport

    def _transport_of(self, conn: UpstreamConnection) -> StandIn:
        for known, transport in self.upstreams:
            if known is conn:
                return transport
        raise LookupError("a pooled connection the harness did not make")

    def written_upstream(self) -> tuple[UpstreamConnection | None, bytes]:
        """The connection a request went out on, and what was written to it
        (connections closed since are forgotten)."""
        self.upstreams = [(c, t) for c, t in self.upstreams if not t.ended or t.written]
        for conn, transport in self.upstreams:
            if transport.written:
                return conn, transport.take()
        return None, b""

    def forget_written(self) -> None:
        """Drop what was written upstream after an earlier run read it (a
        pipelined request sent once the one before it was answered)."""
        for _, transport in self.upstreams:
            transport.written.clear()

    def settle(self) -> None:
        """Run what was deferred with call_soon (hand-overs, queue turns)."""
        self.loop.run_until_complete(asyncio.sleep(0))

    def close(self) -> None:
        self.loop.close()
        self.refuser.close()


class _NoControl:
    """The worker's link to a control process that is not there."""
    slot = 0

    class up:                      # noqa: N801 - stands in for an Endpoint
        class ring:                # noqa: N801
            dropped = 0

        @staticmethod
        def send(message: object, wait: float = 0.0) -> bool:
            return True
