"""Without the privileges or files BPF needs, the balancer learns why and
falls back to the pacer instead of failing to start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataplane.kernel.bpf_cc import BpfAlgorithms
from dataplane.kernel.libbpf import BpfError
from dataplane.kernel.sockmap import Sockmap
from dataplane.control.congestion import Congestion

ROOT = Path(__file__).resolve().parent.parent


def test_objects_not_built_name_the_fix(tmp_path):
    algorithms = BpfAlgorithms(True, {}, directory=tmp_path)
    algorithms.start()
    assert algorithms.reason.endswith("run scripts/build-bpf")
    assert not algorithms.loaded


def test_switched_off_by_configuration():
    algorithms = BpfAlgorithms(False, {})
    algorithms.start()
    assert algorithms.reason == "disabled by congestion.bpf: off"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to run a check as an unprivileged user")
def test_an_unprivileged_user_gets_a_reason_not_a_crash():
    script = ("from dataplane.kernel.bpf_cc import BpfAlgorithms; b = BpfAlgorithms(True, {}); "
              "b.start(); print(b.reason)")
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "run as root" in result.stdout


def test_bpf_names_map_to_the_pacer_when_not_registered():
    # Only while nothing registered them: a running balancer may own them.
    from dataplane.kernel.tcp_info import kernel_algorithms
    if "lb_aimd" in kernel_algorithms():
        pytest.skip("lb_aimd is registered on this machine right now")
    assert Congestion.effective("lb_aimd") == "pacer"
    assert Congestion.effective("cubic") == "cubic" and Congestion.effective(None) == ""


def test_sockmap_relay_without_its_object_names_the_fix(tmp_path):
    with pytest.raises(BpfError, match="lb_relay.bpf.o not built .* run scripts/build-bpf"):
        Sockmap(tmp_path / "lb_relay.bpf.o")
