"""Small helpers shared by the eval tests (imported by name: pytest puts this folder on
sys.path)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every record line of a results file (each must be complete JSON)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
