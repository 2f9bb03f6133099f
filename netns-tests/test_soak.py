"""A minute of scripts/soak, as a user runs it: mixed load through an HTTP and
a TCP balancer while the chaos loop kills, freezes and cuts off backends,
kills workers, reloads and changes the backend set, with hostile clients.
It fails on a corrupted body, descriptors that grow, or a failure that no
disruption explains (scripts/soak.py says what each of those means)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_minute_of_chaos_corrupts_nothing_leaks_nothing_and_explains_every_failure(tmp_path):
    summary_file = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--seconds", "60",
                          "--json", str(summary_file)], capture_output=True, text=True,
                         timeout=300)
    summary = json.loads(summary_file.read_text())
    print(json.dumps(summary, indent=1))
    assert summary["requests"] > 5000
    assert set(summary["by_kind"]) == {"get_keep_alive", "get_close", "post_body", "websocket",
                                       "tcp_stream"}
    assert summary["corrupted"] == 0, summary["corrupted_detail"]
    assert summary["descriptor_growth"] <= 0, summary["descriptors_at_rest"]
    assert summary["unexplained"] == 0, summary["unexplained_detail"]
    assert len(summary["chaos"]) >= 5          # most kinds of disruption happened
    assert run.returncode == 0, run.stderr[-2000:]
