"""The scheduler's memory projections and budgets reach /metrics and the dashboard."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from llamasc.config.settings import Settings
from llamasc.server.observing import build_observer


class _Pool:
    def __init__(self) -> None:
        self.info = SimpleNamespace(
            hash="abcd1234" + "0" * 56,
            model="m1",
            state="ready",
            pid=None,
            memory_projected={"host": 241 * 2**20, "cuda0": 2**30},
        )

    def sidecars(self) -> list[Any]:
        return [self.info]

    def memory(self) -> dict[str, dict[str, int]]:
        return {"host": {"budget": 8 * 2**30, "held": 241 * 2**20, "free": 0}}


def test_projected_memory_and_budgets_come_from_the_pool(tmp_path: Path) -> None:
    settings = Settings(history=tmp_path / "h.sqlite3")
    observer = build_observer(settings, _Pool())  # type: ignore[arg-type]
    assert observer is not None
    snap = observer.loop_snapshot()
    assert snap.sidecar_memory[("abcd1234", "host", "projected")] == 241 * 2**20
    assert snap.sidecar_memory[("abcd1234", "cuda0", "projected")] == 2**30
    view = observer.memory_view(observer.loop_snapshot())
    assert "host" in view["devices"]
    assert view["devices"]["host"].get("budget") == 8 * 2**30
