"""Scheduling (issue 12) end to end: the daemon over the real llama-server and real GGUFs.

TTL, preload, eviction by memory, 503 insufficient_memory and 429 concurrency_limit, as a
client and an operator observe them over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fakes import ThreadDaemon, wait_until

pytestmark = pytest.mark.real

Factory = Callable[..., ThreadDaemon]  # the real_daemon fixture (conftest)


def _chat(model: str, max_tokens: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }


def _post(d: ThreadDaemon, body: dict[str, Any], timeout: float = 180) -> httpx.Response:
    return httpx.post(d.url + "/v1/chat/completions", json=body, timeout=timeout)


def test_ttl_stops_an_idle_sidecar(real_daemon: Factory) -> None:
    d = real_daemon(ttl="1")
    assert _post(d, _chat("smol")).status_code == 200
    [sc] = d.sidecars()
    assert sc["state"] == "ready"
    wait_until(lambda: not d.sidecars(), 60, "the idle sidecar to be stopped by its TTL")


def test_a_per_model_ttl_overrides_the_default(real_daemon: Factory) -> None:
    d = real_daemon(ttl="0", file={"models": {"smol": {"ttl": 1}}})
    assert _post(d, _chat("smol")).status_code == 200
    wait_until(lambda: not d.sidecars(), 60, "the per-model TTL to stop the sidecar")


def test_preload_starts_models_in_the_background_and_a_failed_one_is_only_logged(
    real_daemon: Factory, smollm2_path: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf at all")
    d = real_daemon(
        models={"smol": smollm2_path, "broken": broken}, preload="broken,smol", memory_budget=""
    )
    # the daemon serves at once, before anything is loaded
    assert httpx.get(d.url + "/health", timeout=10).json()["status"] == "ok"
    wait_until(
        lambda: [s["model"] for s in d.sidecars() if s["state"] == "ready"] == ["smol"],
        120,
        "smol to be preloaded without any request",
    )
    assert d.thread.is_alive()
    r = _post(d, _chat("smol"))
    assert r.status_code == 200
    assert httpx.get(d.url + "/health", timeout=10).json()["status"] == "ok"


def test_memory_budget_for_one_model_swaps_even_with_two_slots(
    real_daemon: Factory, smollm2_path: Path, gemma_path: Path
) -> None:
    # at -c 512 SmolLM2 projects ~0.2 GiB and Gemma ~0.75 GiB: 0.9 GiB holds one, not both
    models = {"smol": smollm2_path, "gemma": gemma_path}
    d = real_daemon(models=models, max_sidecars="2", memory_budget="host=900MiB")
    for model in ("smol", "gemma", "smol"):
        r = _post(d, _chat(model))
        assert r.status_code == 200, r.text
        assert [s["model"] for s in d.sidecars() if s["state"] == "ready"] == [model]
    [sc] = d.sidecars()
    assert sc["memory"]["projected"]["host"] > 100 * 1024**2
    assert sc["memory"]["measured"]["host"] > 50 * 1024**2
    health = httpx.get(d.url + "/health", timeout=10).json()
    assert health["memory"]["host"]["budget"] == 900 * 1024**2
    assert 0 < health["memory"]["host"]["held"] <= 900 * 1024**2


def test_a_budget_that_holds_both_keeps_both(
    real_daemon: Factory, smollm2_path: Path, gemma_path: Path
) -> None:
    models = {"smol": smollm2_path, "gemma": gemma_path}
    d = real_daemon(models=models, max_sidecars="2", memory_budget="host=4GiB")
    for model in ("smol", "gemma", "smol"):
        assert _post(d, _chat(model)).status_code == 200
    assert sorted(s["model"] for s in d.sidecars()) == ["gemma", "smol"]


def test_a_model_that_cannot_fit_is_refused_with_503_insufficient_memory(
    real_daemon: Factory,
) -> None:
    d = real_daemon(memory_budget="host=64MiB")
    r = _post(d, _chat("smol"))
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "insufficient_memory"
    assert err["message"].startswith("smol needs ")
    assert "on host; the budget is 64 MiB" in err["message"]
    assert "retry-after" not in r.headers
    assert d.sidecars() == []  # nothing was started


def test_concurrency_limit_answers_429_with_retry_after(real_daemon: Factory) -> None:
    d = real_daemon(queue_timeout="1", file={"models": {"smol": {"concurrency": 1}}})
    assert _post(d, _chat("smol")).status_code == 200  # loaded
    first_chunk = threading.Event()
    done: list[int] = []

    def long_stream() -> None:
        body = _chat("smol", max_tokens=300, stream=True, ignore_eos=True)
        with httpx.stream("POST", d.url + "/v1/chat/completions", json=body, timeout=180) as r:
            for _ in r.iter_lines():
                first_chunk.set()
            done.append(r.status_code)

    t = threading.Thread(target=long_stream)
    t.start()
    assert first_chunk.wait(120)
    r = _post(d, _chat("smol"))
    t.join(180)
    assert done == [200]
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "concurrency_limit"
    assert int(r.headers["retry-after"]) >= 1
