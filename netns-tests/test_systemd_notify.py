"""lbctl run under a Type=notify unit: the notify messages, in order, on a
socket the test binds (as systemd would), without systemd itself."""

from __future__ import annotations

import os
import signal
import socket
import time

from conftest import balancer_config


def test_ready_reloading_ready_stopping_and_the_watchdog_in_order(topology):
    topo = topology(["lb", "b1"])
    topo.python_backend("b1", "b1")
    path = str(topo.tmp / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(10)
    os.environ.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    try:
        lb = topo.balancer("lb", balancer_config(topo, ["b1"]).replace("workers: 1", "workers: 2"))
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]

    def next_message(skip_watchdog: bool = True) -> str:
        while True:
            message = listener.recv(4096).decode()
            if not (skip_watchdog and message == "WATCHDOG=1"):
                return message

    ready = next_message()
    assert ready.startswith("READY=1\nSTATUS=serving http on ") and "2 workers" in ready, ready
    started = time.monotonic()
    watchdogs = 0
    while time.monotonic() - started < 1.0:
        watchdogs += next_message(skip_watchdog=False) == "WATCHDOG=1"
    assert watchdogs >= 3, watchdogs                  # every 200 ms
    lb.send_signal(signal.SIGHUP)
    assert next_message().startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert next_message().startswith("READY=1\nSTATUS=")
    lb.send_signal(signal.SIGTERM)
    assert next_message() == "STOPPING=1\nSTATUS=stopping"
    lb.wait(15)
    listener.close()
