"""Running the balancer: one worker in this process, or several forked ones,
each with its own SO_REUSEPORT listener; signals stop them gracefully.

SIGTERM/SIGINT: stop accepting, let in-flight requests finish within
``timeouts.shutdown``, exit 0. (Restarting dead workers, the shared-memory
channels and SIGHUP reload belong to the process-model issue.)
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys

import structlog
import uvloop

from . import __version__, logs
from .config import Config
from .worker import Worker, listen

log = structlog.get_logger("l7lb")


async def _run_worker(config: Config) -> None:
    loop = asyncio.get_running_loop()
    listener = listen(config)
    worker = Worker(config, loop, listener)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await worker.start()
    gc.freeze()   # start-up objects need no more collection passes
    log.info("listening", address=config.balancer.bind, port=config.balancer.port,
             mode=config.balancer.mode, relay=worker.relay_engine,
             backends=[b.name for b in worker.backends])
    await stop.wait()
    log.info("stopping", grace=config.timeouts.shutdown)
    await worker.stop(config.timeouts.shutdown)
    log.info("stopped", requests=worker.stats.requests, errors=worker.stats.errors)
    logs.flush()


def run_worker(config: Config) -> int:
    try:
        uvloop.run(_run_worker(config))
    except OSError as exc:
        log.error("cannot start", error=f"{exc.strerror or exc}",
                  address=config.balancer.bind, port=config.balancer.port)
        logs.flush()
        return 1
    return 0


def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    logs.setup(config.log)
    count = config.balancer.worker_count()
    log.info("starting", version=__version__, workers=count)
    logs.flush()    # before any fork, or the children would repeat the buffer
    if count == 1:
        return run_worker(config)
    return _supervise(config, count)


def _supervise(config: Config, count: int) -> int:
    children: dict[int, int] = {}
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = run_worker(config)
            sys.stdout.flush()
            os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    while children:
        pid, status = os.wait()
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.error("worker exited", pid=pid, code=code)
            logs.flush()
            worst = worst or (code if code > 0 else 1)
    return worst
