"""dataplane/ and lbctl/ type-check under mypy's strict mode (its settings,
the folders and the pinned version are in pyproject.toml), and every
``type: ignore`` names its error code and says why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_passes():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_every_type_ignore_names_its_code_and_reason():
    bare = []
    for path in [*ROOT.glob("dataplane/**/*.py"), *ROOT.glob("lbctl/**/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "type: ignore" in line and not re.search(r"type: ignore\[[a-z, -]+\]\s+#\s*\S", line):
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert bare == []
