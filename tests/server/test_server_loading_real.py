"""``send_loading_state`` end to end: the daemon over the real llama-server and SmolLM2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fakes import ThreadDaemon

pytestmark = pytest.mark.real

Factory = Callable[..., ThreadDaemon]


@pytest.fixture
def daemon(real_daemon: Factory, tmp_path: Path, smollm2_path: Path) -> Factory:
    """Daemons serving SmolLM2 as ``smol`` and a GGUF that fails to load as ``broken``."""
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)

    def make(file: dict[str, Any]) -> ThreadDaemon:
        return real_daemon({"smol": smollm2_path, "broken": broken}, file)

    return make


def _stream(d: ThreadDaemon, model: str) -> tuple[int, list[Any]]:
    """Status and the parsed events of one streaming chat ("[DONE]" kept as a string)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 6,
        "temperature": 0,
        "stream": True,
    }
    events: list[Any] = []
    with httpx.stream("POST", d.url + "/v1/chat/completions", json=body, timeout=180) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                events.append(data if data == "[DONE]" else json.loads(data))
        return r.status_code, events


def _reasoning(events: list[Any]) -> str:
    return "".join(
        (c.get("delta") or {}).get("reasoning_content") or ""
        for e in events
        if isinstance(e, dict)
        for c in e.get("choices") or []
    )


def _content(events: list[Any]) -> str:
    return "".join(
        (c.get("delta") or {}).get("content") or ""
        for e in events
        if isinstance(e, dict)
        for c in e.get("choices") or []
    )


def test_a_stream_that_waits_for_a_start_gets_loading_deltas_then_the_answer(
    daemon: Factory,
) -> None:
    d = daemon({"models": {"smol": {"send_loading_state": True}}})
    status, events = _stream(d, "smol")
    assert status == 200
    first = events[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert first["reasoning_content"].startswith("loading smol")
    said = _reasoning(events)
    assert " ready in " in said, said
    assert _content(events).strip()  # the real answer followed
    assert events[-1] == "[DONE]"
    # loaded now: no loading deltas
    status, events = _stream(d, "smol")
    assert status == 200
    assert _reasoning(events) == ""
    assert _content(events).strip()


def test_without_the_setting_a_cold_stream_has_no_loading_deltas(daemon: Factory) -> None:
    d = daemon({})
    status, events = _stream(d, "smol")
    assert status == 200
    assert _reasoning(events) == ""
    assert _content(events).strip()


def test_a_start_that_fails_ends_the_loading_stream_with_an_error_event(daemon: Factory) -> None:
    d = daemon({"models": {"broken": {"send_loading_state": True}}})
    status, events = _stream(d, "broken")
    assert status == 200  # sent before the start failed
    assert _reasoning(events).startswith("loading broken")
    error = events[-1]["error"]
    assert error["type"]
    assert error["message"]
    assert "llama-server" in error["message"]
