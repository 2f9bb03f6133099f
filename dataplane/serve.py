"""Running the balancer: ``serve`` runs the control process (control/) in the
foreground; it forks the workers (worker/)."""

from __future__ import annotations

import sys

import structlog
import uvloop

from . import __version__, logs
from .config import Config
from .control.process import Control

log = structlog.get_logger("l7lb")


def serve(config: Config, path: str | None = None) -> int:
    """Run the control process and its workers until SIGTERM/SIGINT; return the
    exit code. ``path`` is re-read on SIGHUP."""
    try:
        logs.setup(config.log)
    except OSError as exc:
        print(f"l7lb: cannot open log.file: {exc}", file=sys.stderr)
        return 1
    log.info("starting", version=__version__, workers=config.balancer.worker_count())
    try:
        return uvloop.run(Control(config, path).run())
    finally:
        logs.flush()
