"""Small helpers shared by the eval tests (imported by name: pytest puts this folder on
sys.path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from free_ports import free_port  # noqa: F401  (re-exported for the tests here)

DATA = Path(__file__).parent / "data"


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every record line of a results file (each must be complete JSON)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
