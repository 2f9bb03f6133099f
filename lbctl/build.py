"""What ``lbctl --version`` says: the package version and, in a git checkout,
the commit it runs from (and whether files differ from it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dataplane import __version__

ROOT = Path(__file__).resolve().parent.parent


def build() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty",
                              "--abbrev=10"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return __version__
    commit = out.stdout.strip()
    return f"{__version__} ({commit})" if out.returncode == 0 and commit else __version__
