"""A/B through a llamasc daemon (over our fake llama-server): flags travel in X-Agent-Flags,
each flag set gets its own sidecar, and a rerun asks the server nothing."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eval_test_helpers import free_port, lines_of


@pytest.fixture
def daemon(fake_llama_server_bin: Path, tmp_path: Path) -> Iterator[str]:
    model = tmp_path / "smol.gguf"
    model.write_bytes(b"GGUF")
    model_map = tmp_path / "map.json"
    model_map.write_text(json.dumps({"smol": str(model)}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("LLAMASC_API_KEY", "BASE_ARGS")}
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llamasc",
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--llama-server",
            str(fake_llama_server_bin),
            "--model-map",
            str(model_map),
            "--state-file",
            str(tmp_path / "state.json"),
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("daemon not healthy")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def served(url: str) -> dict[tuple[str, ...], int]:
    body = httpx.get(url + "/sidecars", timeout=5).json()
    rows = body if isinstance(body, list) else body.get("sidecars", [])
    return {tuple(s["flags"]): int(s["requests_served"]) for s in rows}


def test_ab_through_the_daemon_sends_each_flag_set(
    daemon: str, tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "llamasc",
        "eval",
        "ab",
        "--a",
        "smol:-ctk f16",
        "--b",
        "smol:--cache-type-k=q8_0",
        "--endpoint",
        daemon,
        "--suite",
        "mmlu,gsm8k",
        "--limit",
        "3",
        "--max-tokens",
        "8",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
    ]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert "not a llamasc daemon" not in first.stderr
    counts = served(daemon)
    by_kv = {
        next(v for k, v in itertools.pairwise(f) if k == "--cache-type-k"): n
        for f, n in counts.items()
    }
    # per side: 3 MMLU + 3 GSM8K questions, and each run's GET /props for its concurrency
    assert by_kv == {"f16": 8, "q8_0": 8}
    records = [r for p in out.glob("*/*.jsonl") for r in lines_of(p)]
    assert len(records) == 12
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert served(daemon) == counts  # the rerun reused every answer on disk


@pytest.mark.anyio
async def test_concurrency_defaults_to_the_slots_of_the_sidecar_behind_the_daemon(
    daemon: str, tmp_path: Path
) -> None:
    from eval_test_helpers import DATA

    from llamasc.eval import EvalOptions, evaluate, load_items

    items = load_items("gsm8k", DATA / "gsm8k_small.jsonl")
    for slots in (3, 5):
        opts = EvalOptions(
            endpoint=daemon, out_dir=tmp_path / str(slots), max_tokens=8, flags=f"-np {slots}"
        )
        result = await evaluate("gsm8k", items, opts)
        assert result.concurrency == slots
    parallel = {dict(itertools.pairwise(f)).get("--parallel") for f in served(daemon)}
    assert parallel == {"3", "5"}
