"""The pool saves slots on the stops that make room, restores them before the first grant,
and never on a crash or an operator's stop (fake children, fake slot API)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from pool_fakes import FakeLauncher, until

from llamasc.config import ModelCatalog, ModelEntry
from llamasc.pool.config import PoolConfig
from llamasc.pool.pool import Pool
from llamasc.pool.slotcache import SlotCache

pytestmark = pytest.mark.anyio
CATALOG = ModelCatalog.of([ModelEntry("m1", Path("m1.gguf")), ModelEntry("m2", Path("m2.gguf"))])


class SlotAPI:
    """Every child's slot API: one slot of 2,000 tokens; save writes the file llama-server
    would write (into the directory the child was given)."""

    def __init__(self, launcher: FakeLauncher) -> None:
        self.launcher = launcher
        self.events: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port
        child = next(c for c in self.launcher.children if c.port == port)
        model = child.spec.model_path.stem
        if request.method == "GET":
            return httpx.Response(200, json=[{"id": 0, "n_prompt_tokens": 2000}])
        action = request.url.params["action"]
        self.events.append(f"{action} {model}")
        name = json.loads(request.content)["filename"]
        args = list(child.spec.args)
        where = Path(args[args.index("--slot-save-path") + 1])
        if action == "save":
            (where / name).write_bytes(b"kv" * 100)
            return httpx.Response(200, json={"n_saved": 2000, "n_written": 200})
        return httpx.Response(200, json={"n_restored": 2000, "n_read": 200})


async def test_saved_on_eviction_restored_before_the_grant_not_on_crash_or_operator_stop(
    tmp_path: Path,
) -> None:
    launcher = FakeLauncher()
    api = SlotAPI(launcher)
    config = PoolConfig(max_sidecars=1, port_range=(20000, 20999), health_interval=0)
    async with Pool(
        config, CATALOG, Path("llama-server"), ("-c", "512"), launcher=launcher
    ) as pool:
        cache = SlotCache(tmp_path, min_tokens=1024, max_bytes=10**6,
                          transport=httpx.MockTransport(api))  # fmt: skip
        pool._sidecars.slot_cache = cache  # the fake binary has no --help to read it from
        async with pool.lease("m1", ()):
            api.events.append("granted m1")
        assert "--slot-save-path" in launcher.specs[-1].args
        async with pool.lease("m2", ()):  # one slot: m1 is evicted, its slot saved
            api.events.append("granted m2")
        async with pool.lease("m1", ()):  # m2 evicted (saved); m1 restored, then granted
            api.events.append("granted m1")
        assert api.events == [
            "granted m1",
            "save m1",
            "granted m2",
            "save m2",
            "restore m1",
            "granted m1",
        ]
        api.events.clear()
        [info] = pool.sidecars()
        await pool.stop_sidecar(info.hash)  # an operator's stop: nothing saved
        async with pool.lease("m2", ()):
            pass
        assert api.events == ["restore m2"]
        api.events.clear()
        next(iter(launcher.live)).exit(1)  # a crash: nothing saved
        await until(lambda: not pool.sidecars())
        assert api.events == []
        assert set(cache.sizes()) == {s.args[s.args.index("--slot-save-path") + 1][-64:]
                                      for s in launcher.specs[:2]}  # fmt: skip
