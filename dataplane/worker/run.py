"""What a forked worker process runs: its own uvloop loop around a Worker."""

from __future__ import annotations

import asyncio
import cProfile
import gc
import mmap
import os
import signal
import socket
import ssl

import structlog
import uvloop

from .. import logs
from ..channel.link import Link
from ..config import Config
from .orphan import Orphan
from .process import Worker

log = structlog.get_logger("l7lb")


async def _run_worker(config: Config, listeners: list[socket.socket], link: Link,
                      tls_front: ssl.SSLContext | None, client_counts: mmap.mmap | None) -> None:
    loop = asyncio.get_running_loop()
    control = os.getppid()
    worker = Worker(config, loop, listeners, link, tls_front, client_counts)
    stop = asyncio.Event()
    orphan = Orphan(worker, stop.set)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, logs.reopen)
    loop.add_signal_handler(signal.SIGUSR2, orphan.begin)    # the control process died
    if os.getppid() != control:
        orphan.begin()          # it died before the handler was there
    await worker.start()
    gc.freeze()   # start-up objects need no more collection passes
    log.info("worker listening", slot=link.slot, relay=worker.relay_engine)
    await stop.wait()
    orphan.close()
    await worker.stop(config.timeouts.shutdown)
    worker.report()
    log.info("worker stopped", requests=worker.stats.requests, errors=worker.stats.errors)


def run_worker(config: Config, listeners: list[socket.socket], link: Link,
               tls_front: ssl.SSLContext | None = None,
               client_counts: mmap.mmap | None = None) -> int:
    """Serve on ``listeners`` until SIGTERM; return the exit code. With
    L7LB_PROFILE=DIR in the environment, the worker runs under cProfile and
    leaves DIR/worker-PID.prof (scripts/profile-http reads it)."""
    profile_dir = os.environ.get("L7LB_PROFILE")
    if not profile_dir:
        uvloop.run(_run_worker(config, listeners, link, tls_front, client_counts))
        return 0
    profile = cProfile.Profile()
    profile.enable()
    try:
        uvloop.run(_run_worker(config, listeners, link, tls_front, client_counts))
    finally:
        profile.disable()
        profile.dump_stats(os.path.join(profile_dir, f"worker-{os.getpid()}.prof"))
    return 0
