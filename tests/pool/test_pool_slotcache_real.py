"""The prompt cache survives a swap: real llama-server, SmolLM2 evicted for Gemma and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pool_fakes import free_block

from llamasc.config import ModelCatalog, ModelEntry
from llamasc.pool import Pool, PoolConfig

pytestmark = [pytest.mark.anyio, pytest.mark.real]

# ~1,300 tokens for SmolLM2's tokenizer: well over the 1,024-token default minimum
LONG = " ".join(f"Item {i} of the inventory is a {c} box." for i, c in enumerate(
    ["red", "green", "blue", "small", "large", "heavy", "light", "wooden"] * 19
))  # fmt: skip
ARGS = ("-c", "2048", "-np", "1")


def _chat(content: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 4,
        "temperature": 0,
    }


async def _ask(pool: Pool, http: httpx.AsyncClient, model: str, content: str) -> dict[str, Any]:
    async with pool.lease(model, ()) as lease:
        r = await http.post(f"{lease.base_url}/v1/chat/completions", json=_chat(content))
        assert r.status_code == 200, r.text
        timings: dict[str, Any] = r.json()["timings"]
        return timings


async def _swap_out_and_back(config: PoolConfig, binary: Path, catalog: ModelCatalog) -> int:
    """prompt_n of the long prompt's second ask, after SmolLM2 was evicted for Gemma."""
    async with Pool(config, catalog, binary, ARGS) as pool, httpx.AsyncClient(timeout=300) as http:
        first = await _ask(pool, http, "smol", LONG)
        assert first["prompt_n"] > 1100, first
        await _ask(pool, http, "gemma", "Say hi.")  # one slot: SmolLM2 is evicted (saved)
        assert [i.model for i in pool.sidecars()] == ["gemma"]
        again = await _ask(pool, http, "smol", LONG)  # a fresh child (restored)
        return int(again["prompt_n"])


def _catalog(smollm2: Path, gemma: Path) -> ModelCatalog:
    return ModelCatalog.of([ModelEntry("smol", smollm2), ModelEntry("gemma", gemma)])


async def test_a_restored_slot_skips_the_prefill_and_without_the_cache_it_does_not(
    llama_server_bin: Path, smollm2_path: Path, gemma_path: Path, tmp_path: Path
) -> None:
    catalog = _catalog(smollm2_path, gemma_path)
    on = PoolConfig(
        max_sidecars=1, port_range=free_block(8), health_interval=0, slot_cache=tmp_path / "sc"
    )
    restored = await _swap_out_and_back(on, llama_server_bin, catalog)
    assert restored < 50, restored  # prefill skipped: only the last tokens evaluated
    files = list((tmp_path / "sc").rglob("llamasc-*-slot0.bin"))
    assert len(files) == 1
    assert files[0].stat().st_size > 1_000_000

    off = PoolConfig(max_sidecars=1, port_range=free_block(8), health_interval=0)
    assert await _swap_out_and_back(off, llama_server_bin, catalog) > 1100


async def test_a_short_conversation_is_not_saved(
    llama_server_bin: Path, smollm2_path: Path, gemma_path: Path, tmp_path: Path
) -> None:
    config = PoolConfig(
        max_sidecars=1, port_range=free_block(8), health_interval=0, slot_cache=tmp_path / "sc"
    )
    catalog = _catalog(smollm2_path, gemma_path)
    async with (
        Pool(config, catalog, llama_server_bin, ARGS) as pool,
        httpx.AsyncClient(timeout=300) as http,
    ):
        await _ask(pool, http, "smol", "Say hello.")
        await _ask(pool, http, "gemma", "Say hi.")
        report = pool._sidecars.last_save[next(iter(pool._sidecars.last_save))]
        assert report.slots == 0
        assert report.skipped == 1
        assert not report.failed
    assert not list((tmp_path / "sc").rglob("*.bin"))
