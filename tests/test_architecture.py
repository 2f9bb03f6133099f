"""docs/architecture.md names every module under dataplane/, so the map a
newcomer reads first has no blank spots."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_is_named_in_the_architecture_page():
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "dataplane").rglob("*.py"))
               if path.name != "__init__.py" and f"`{path.name}`" not in page]
    assert missing == []
