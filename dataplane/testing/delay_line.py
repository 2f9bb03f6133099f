"""A path's delay where the kernel has no netem (this project's host kernel
has neither netem nor fq, so no earliest-departure-time delay either).

Run inside the switch namespace of a test topology: it reads every frame a
host sends into its switch port (an AF_PACKET socket sees a copy before the
bridge, where a netfilter rule drops the original), holds it ``--delay-ms``
and sends it on into the bridge through a veth pair. Frames towards the host
are not touched, so bulk data keeps the kernel's path (and a tbf bottleneck)
and only the host's ACKs and answers wait: the round trip grows by the
delay. Set up by ``Topology.delay`` (netns-tests/topology.py); the host's
checksum and segmentation offloads must be off, since frames are copied as
they are.
"""

from __future__ import annotations

import argparse
import collections
import select
import socket
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
MAX_FRAME = 65536


def run(ingress: str, egress: str, delay: float) -> None:
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind((ingress, 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((egress, 0))
    held: collections.deque[tuple[float, bytes]] = collections.deque()
    print(f"delay line {ingress} -> {egress}: {delay * 1000:g} ms", flush=True)
    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            tx.send(held.popleft()[1])
        select.select([rx], [], [], held[0][0] - now if held else None)
        due = time.monotonic() + delay
        while True:
            try:
                frame, address = rx.recvfrom(MAX_FRAME)
            except BlockingIOError:
                break
            if address[2] != PACKET_OUTGOING:      # what the host sent, not what it is sent
                held.append((due, frame))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ingress", required=True, help="the host's switch port")
    parser.add_argument("--egress", required=True, help="the veth end leading into the bridge")
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args()
    run(args.ingress, args.egress, args.delay_ms / 1000)


if __name__ == "__main__":
    main()
