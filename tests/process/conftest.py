"""Helpers for the process tests: free ports, specs for the fake, and a leak check."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from process_helpers import alive, free_port

from llamasc.process import LaunchSpec


@pytest.fixture(autouse=True)
def _own_home(isolated_env: Path) -> Path:
    """Every test gets its own LLAMASC_HOME (the empty XDG_CONFIG_HOME lives there)."""
    return isolated_env


@pytest.fixture(autouse=True)
def _no_leaked_children() -> Iterator[None]:
    """Fail a test that leaves a child process behind (after a short grace for reaping)."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 3.0
    leaked: list[psutil.Process] = []
    while time.monotonic() < deadline:
        leaked = [p for p in me.children(recursive=True) if p.pid not in before and alive(p.pid)]
        if not leaked:
            return
        time.sleep(0.02)
    for p in leaked:
        p.kill()
    pytest.fail(f"test leaked child processes: {[p.pid for p in leaked]}")


@pytest.fixture
def fake_spec(fake_llama_server_bin: Path, tmp_path: Path) -> Callable[..., LaunchSpec]:
    """``fake_spec("--fake-hang", port=..., label=...)`` -> a LaunchSpec running the fake."""

    def make(*args: str, **kw: Any) -> LaunchSpec:
        kw.setdefault("port", free_port())
        kw.setdefault("label", "test")
        return LaunchSpec(
            binary=fake_llama_server_bin,
            model_path=tmp_path / "model.gguf",
            args=args,
            **kw,
        )

    return make
