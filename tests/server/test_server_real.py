"""The daemon over the real llama-server with real GGUF models (SmolLM2-135M, Gemma-3-270M)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fakes import ThreadDaemon, free_port_range, wait_until

from llamasc.config.settings import settings_from_sources

pytestmark = pytest.mark.real

RealFactory = Callable[..., ThreadDaemon]


@pytest.fixture
def real_daemon(
    tmp_path: Path,
    llama_server_bin: Path,
    smollm2_path: Path,
    isolated_env: Path,
) -> Iterator[RealFactory]:
    started: list[ThreadDaemon] = []

    def make(models: dict[str, Path] | None = None, **cli: Any) -> ThreadDaemon:
        model_map = tmp_path / "models.json"
        model_map.write_text(
            json.dumps({k: str(v) for k, v in (models or {"smol": smollm2_path}).items()})
        )
        lo, hi = free_port_range()
        values: dict[str, Any] = {
            "llama_server_bin": str(llama_server_bin),
            "model_map_file": str(model_map),
            "bind": "127.0.0.1:0",
            "port_range": f"{lo}-{hi}",
            "base_args": '["-c", "512", "-np", "1", "-t", "2"]',
            "home": str(tmp_path / "home"),
            "health_timeout": "60",
            **cli,
        }
        d = ThreadDaemon(settings_from_sources(env={}, cli=values))
        started.append(d)
        return d

    yield make
    for d in started:
        if d.thread.is_alive():
            d.stop()


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 4,
        "temperature": 0,
        **extra,
    }


def test_openai_client_stream_and_not(real_daemon: RealFactory) -> None:
    import openai

    d = real_daemon()
    with openai.OpenAI(base_url=d.url + "/v1", api_key="x", max_retries=0) as client:
        done = client.chat.completions.create(**_chat("smol"))
        assert done.choices[0].message.content
        # The sidecar answers under the model id, never the GGUF's local path.
        assert done.model == "smol"
        assert done.usage is not None
        assert done.usage.completion_tokens >= 1
        stream = client.chat.completions.create(**_chat("smol"), stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text
    sidecars = d.sidecars()
    assert len(sidecars) == 1
    assert sidecars[0]["requests_served"] == 2
    assert sidecars[0]["last_timings"]["predicted_n"] >= 1


def test_agent_flags_make_a_second_sidecar(real_daemon: RealFactory) -> None:
    d = real_daemon()
    with httpx.Client(base_url=d.url, timeout=120) as c:
        assert c.post("/v1/chat/completions", json=_chat("smol")).status_code == 200
        r = c.post(
            "/v1/chat/completions",
            json=_chat("smol"),
            headers={"X-Agent-Flags": "--top-k 1"},
        )
        assert r.status_code == 200, r.text
        bad = c.post(
            "/v1/chat/completions",
            json=_chat("smol"),
            headers={"X-Agent-Flags": "--host 0.0.0.0 --top-k x"},
        )
        assert bad.status_code == 400
        assert len(bad.json()["error"]["details"]) == 2
        # /props of the flagged sidecar: llama-server's own answer, through the daemon
        props = c.get("/props", params={"model": "smol"}, headers={"X-Agent-Flags": "--top-k 1"})
        assert props.status_code == 200, props.text
        assert props.json()["total_slots"] >= 1
        assert props.json()["default_generation_settings"]["params"]["top_k"] == 1
    flags = sorted(tuple(s["flags"]) for s in d.sidecars())
    assert len(flags) == 2
    assert any("--top-k" in f for f in flags)


@pytest.mark.parametrize("overlap", [False, True], ids=["sequential", "overlap-swaps"])
def test_swap_between_two_models_with_one_slot(
    real_daemon: RealFactory, smollm2_path: Path, gemma_path: Path, overlap: bool
) -> None:
    models = {"smol": smollm2_path, "gemma": gemma_path}
    d = real_daemon(models, max_sidecars="1", overlap_swaps=overlap)
    with httpx.Client(base_url=d.url, timeout=120) as c:
        for model in ("smol", "gemma", "smol"):
            r = c.post("/v1/chat/completions", json=_chat(model))
            assert r.status_code == 200, r.text

            # with overlap the evicted one may still be on its way out for a moment
            def alone(want: str = model) -> bool:
                return [s["model"] for s in d.sidecars()] == [want]

            wait_until(alone, 30, f"{model} alone")


def test_corrupt_gguf_is_502_with_llama_servers_error(
    real_daemon: RealFactory, tmp_path: Path
) -> None:
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    d = real_daemon({"bad": bad})
    r = httpx.post(d.url + "/v1/chat/completions", json=_chat("bad"), timeout=120)
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["code"] == "spawn_failed"
    assert err["source"] == "upstream"
    text = err["message"] + "\n".join(err.get("details", []))
    assert "exit" in err["message"]
    assert "model" in text.lower()
    assert "error" in text.lower() or "failed" in text.lower()
