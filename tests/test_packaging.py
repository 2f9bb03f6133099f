"""The systemd unit as systemd reads it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


ROOT = UNIT.parent.parent


def test_the_image_is_made_by_scripts_setup_and_nothing_else():
    steps = [line for line in (ROOT / "Dockerfile").read_text().splitlines()
             if line.startswith("RUN ")]
    assert any("scripts/setup" in step for step in steps)
    installs = [step for step in steps if "pip install" in step or "apt-get install" in step]
    # Only sudo, which scripts/setup calls when it is not root; the rest is its list.
    assert all("apt-get install -y -qq sudo" in step and "pip" not in step for step in installs)


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="needs docker-compose")
def test_the_compose_file_parses_and_mounts_the_seed_example_unchanged():
    out = subprocess.run(["docker-compose", "config"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert services["l7lb"]["volumes"] == [f"{ROOT}/config.example.yaml:/etc/l7lb/config.yaml:ro"]
    assert [(p["published"], p["target"]) for p in services["l7lb"]["ports"]] == [(8080, 8080)]
    assert services["backend2"]["networks"]["default"]["aliases"] == ["backend2.example.com"]


def lbctl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed lbctl, as a user runs it."""
    return subprocess.run([str(Path(sys.executable).parent / "lbctl"), *args],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_lbctl_version_names_the_build():
    out = lbctl("--version")
    assert out.returncode == 0 and re.match(r"lbctl \d+\.\d+\.\d+( \([0-9a-f]+(-dirty)?\))?$",
                                            out.stdout.strip()), out.stdout


def test_lbctl_has_shell_completion():
    out = lbctl(env={"_LBCTL_COMPLETE": "bash_source"})
    assert "complete " in out.stdout and "_LBCTL_COMPLETE" in out.stdout, out.stdout[:300]


@pytest.mark.skipif(not shutil.which("vagrant"), reason="needs vagrant (scripts/setup)")
def test_vagrant_accepts_the_vagrantfile(tmp_path):
    # Vagrant's state goes to tmp_path, not a .vagrant/ inside the checkout.
    env = {**os.environ, "VAGRANT_DOTFILE_PATH": str(tmp_path / "vagrant")}
    out = subprocess.run(["vagrant", "validate"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0 and "validated successfully" in out.stdout, out.stdout + out.stderr
