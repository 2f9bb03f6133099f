"""What a forked worker process runs: its own uvloop loop around a Worker."""

from __future__ import annotations

import asyncio
import gc
import signal
import socket

import structlog
import uvloop

from ..channel.link import Link
from ..config import Config
from .process import Worker

log = structlog.get_logger("l7lb")


async def _run_worker(config: Config, listener: socket.socket, link: Link) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(config, loop, listener, link)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await worker.start()
    gc.freeze()   # start-up objects need no more collection passes
    log.info("worker listening", slot=link.slot, relay=worker.relay_engine)
    await stop.wait()
    await worker.stop(config.timeouts.shutdown)
    worker.report()
    log.info("worker stopped", requests=worker.stats.requests, errors=worker.stats.errors)


def run_worker(config: Config, listener: socket.socket, link: Link) -> int:
    """Serve on ``listener`` until SIGTERM; return the exit code."""
    uvloop.run(_run_worker(config, listener, link))
    return 0
