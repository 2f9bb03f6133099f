"""The systemd unit as systemd reads it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "packaging" / "l7lb.service"


@pytest.mark.skipif(not shutil.which("systemd-analyze") or not Path("/usr/local/bin/lbctl").exists(),
                    reason="needs systemd-analyze and lbctl linked by scripts/setup (as root)")
def test_systemd_accepts_the_unit():
    out = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_the_unit_asks_for_what_the_balancer_needs_and_no_more():
    text = UNIT.read_text()
    assert "Type=notify" in text and "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "RuntimeDirectory=l7lb" in text
    caps = [line.split("=", 1)[1].split() for line in text.splitlines()
            if line.startswith(("AmbientCapabilities=", "CapabilityBoundingSet="))]
    assert caps == [["CAP_NET_BIND_SERVICE", "CAP_BPF", "CAP_NET_ADMIN"]] * 2
