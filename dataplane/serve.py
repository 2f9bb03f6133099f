"""Running the balancer: ``serve`` runs the control process (control.py) in
the foreground; ``run_worker`` is what each forked worker runs."""

from __future__ import annotations

import asyncio
import gc
import signal
import socket

import structlog
import uvloop

from . import __version__, logs
from .channel import Link
from .config import Config
from .control import Control
from .worker import Worker

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


def serve(config: Config, path: str | None = None) -> int:
    """Run the control process and its workers until SIGTERM/SIGINT; return the
    exit code. ``path`` is re-read on SIGHUP."""
    logs.setup(config.log)
    log.info("starting", version=__version__, workers=config.balancer.worker_count())
    try:
        return uvloop.run(Control(config, path).run())
    finally:
        logs.flush()
