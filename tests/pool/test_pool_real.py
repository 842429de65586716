"""The Pool with the real llama-server and two real models, swapping in one slot."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pool_fakes import free_block

from llamasc.config import ModelCatalog, ModelEntry
from llamasc.pool import Pool, PoolConfig

pytestmark = [pytest.mark.anyio, pytest.mark.real]


async def test_one_slot_alternating_smollm2_and_gemma_answers_every_time(
    llama_server_bin: Path, smollm2_path: Path, gemma_path: Path, isolated_env: Path
) -> None:
    catalog = ModelCatalog.of([ModelEntry("smol", smollm2_path), ModelEntry("gemma", gemma_path)])
    config = PoolConfig(max_sidecars=1, port_range=free_block(8), health_interval=0)
    seen: list[tuple[str, int]] = []
    async with (
        Pool(config, catalog, llama_server_bin, ("-c", "512", "-np", "1")) as pool,
        httpx.AsyncClient(timeout=60) as http,
    ):
        for model, path in [("smol", smollm2_path), ("gemma", gemma_path)] * 2:
            async with pool.lease(model, ["--seed", "1"]) as lease:
                props = (await http.get(f"{lease.base_url}/props")).json()
                assert Path(props["model_path"]).name == path.name
                r = await http.post(
                    f"{lease.base_url}/v1/chat/completions",
                    json={
                        "messages": [{"role": "user", "content": "Say hello."}],
                        "max_tokens": 8,
                        "temperature": 0,
                    },
                )
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["choices"][0]["message"]["content"].strip()
                assert body["usage"]["completion_tokens"] > 0
                lease.record(body.get("timings"))
                [info] = pool.sidecars()
                seen.append((info.model, info.pid or 0))
                assert info.last_timings is not None
    # four loads in one slot: each swap replaced the child
    assert [m for m, _ in seen] == ["smol", "gemma", "smol", "gemma"]
    assert len({pid for _, pid in seen}) == 4
