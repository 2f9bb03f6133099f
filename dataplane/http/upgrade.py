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
        if not client.stream.plain or upstream.stream.tls is not None:
            # TLS layers in user space stay: the relay copies through them.
            stream = client.upgraded()
            sides = (None if stream.plain else stream.hand_over(),
                     cluster.detach_transport(upstream) if upstream.stream.tls else None)
            a = stream.detach() if sides[0] is None else sides[0].get_extra_info("socket")
            b = cluster.detach(upstream) if sides[1] is None \
                else sides[1].get_extra_info("socket")
            relay = CopyRelay(worker.reactor, a, b, worker.forget, buffer, adopted=sides)
            worker.track(relay)
            relay.start()
            return
        # A kernel TLS socket splices, but never joins a sockmap (its verdicts see records).
        sockmap = None if client.stream.kernel_tls else worker.sockmap
        spliced = make_relay(worker.relay_engine, worker.reactor, client.upgraded().detach(),
                             cluster.detach(upstream), worker.forget, buffer, sockmap)
        worker.track(spliced)
        spliced.start()

    client.stream.when_drained(hand_over)
    upstream.stream.when_drained(hand_over)
