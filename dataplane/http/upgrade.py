"""After a 101 Switching Protocols: the client's and the backend's connections
become one byte stream, moved by a relay once both sides have drained what the
HTTP layer had queued for them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..io.relay import CopyRelay
from ..io.relays import make_relay
from ..io.stream import Stream
from ..upstream.cluster import Cluster
from ..upstream.connection import UpstreamConnection

if TYPE_CHECKING:
    from ..worker_view import WorkerView


class Upgraded(Protocol):
    """The client connection, handing its stream over."""
    stream: Stream

    def upgraded(self) -> Stream: ...


def join_streams(worker: "WorkerView", client: Upgraded, upstream: UpstreamConnection,
                 cluster: Cluster) -> None:
    """Hand both sockets to a relay; the upstream one leaves the pool for good."""
    handed: list[bool] = []

    def hand_over() -> None:
        if handed or client.stream.pending or upstream.stream.pending:
            return      # called again by the other stream's drain
        handed.append(True)
        buffer = worker.config.limits.buffer
        if client.stream.tls is not None or upstream.stream.tls is not None:
            # TLS layers stay: the relay copies through them.
            stream = client.upgraded()
            sides = (stream.hand_over() if stream.tls else None,
                     cluster.detach_transport(upstream) if upstream.stream.tls else None)
            a = stream.detach() if sides[0] is None else sides[0].get_extra_info("socket")
            b = cluster.detach(upstream) if sides[1] is None \
                else sides[1].get_extra_info("socket")
            relay = CopyRelay(worker.reactor, a, b, worker.forget, buffer, adopted=sides)
            worker.track(relay)
            relay.start()
            return
        spliced = make_relay(worker.relay_engine, worker.reactor, client.upgraded().detach(),
                             cluster.detach(upstream), worker.forget, buffer, worker.sockmap)
        worker.track(spliced)
        spliced.start()

    client.stream.when_drained(hand_over)
    upstream.stream.when_drained(hand_over)
