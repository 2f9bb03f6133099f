"""lbctl run under a Type=notify unit: the notify messages, in order, on a
socket the test binds (as systemd would), without systemd itself."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time

from conftest import balancer_config, lbctl


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


def test_an_upgrade_hands_systemd_the_new_main_pid_which_then_says_ready(topology):
    """NotifyAccess=main: the old main process names the new one (MAINPID=),
    whose READY=1 and watchdog pings follow; each message's sender is read
    from its credentials, as systemd reads them."""
    topo = topology(["lb", "b1"])
    topo.python_backend("b1", "b1")
    path = str(topo.tmp / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    listener.bind(path)
    listener.settimeout(10)
    lb = topo.balancer("lb", balancer_config(topo, ["b1"]),
                       env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})

    def next_message() -> tuple[int, str]:
        data, ancillary, _, _ = listener.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = next(struct.unpack("3i", value)[0] for level, kind, value in ancillary
                   if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
        return pid, data.decode()

    while (said := next_message())[1] == "WATCHDOG=1":
        pass
    assert said[0] == lb.pid and said[1].startswith("READY=1")
    done = lbctl(topo, "upgrade")
    assert done.returncode == 0, done.stderr
    new = int(done.stdout.split("process ")[1].split()[0])
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        seen.append(next_message())
    told = seen.index((lb.pid, f"MAINPID={new}"))
    ready = next(i for i, (pid, text) in enumerate(seen) if pid == new and text.startswith("READY=1"))
    assert told < ready, seen
    assert sum(1 for pid, text in seen[ready:] if (pid, text) == (new, "WATCHDOG=1")) >= 3, seen
    assert lb.wait(15) == 0                        # the old one drained and left
    subprocess.run(["kill", "-TERM", str(new)], check=True)
    listener.close()
