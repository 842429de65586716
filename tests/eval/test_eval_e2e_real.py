"""End to end through the CLI against the real llama-server with SmolLM2-135M.

Small subsets of our own fixtures and small max_tokens keep this to well under a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_test_helpers import DATA, lines_of

pytestmark = pytest.mark.real

SERVER_FLAGS = ("-c", "2048", "--parallel", "2", "--threads", "2")


def llamasc(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "llamasc", "eval", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def summary_of(out: Path, benchmark: str) -> dict[str, object]:
    (path,) = (out / benchmark).glob("*.summary.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.timeout(900)  # ~500 generated tokens: seconds when idle, minutes on a loaded box
def test_three_benchmarks_on_smollm2(
    llama_server_bin: Path, smollm2_path: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(llama_server_bin, smollm2_path, *SERVER_FLAGS)
    out = tmp_path / "out"
    runs = [
        ("mmlu", "mmlu_small.jsonl", "6", "16"),
        ("gsm8k", "gsm8k_small.jsonl", "4", "32"),
        ("humaneval", "humaneval_small.jsonl", "3", "96"),
    ]
    for bench, data, limit, max_tokens in runs:
        proc = llamasc(
            bench,
            "--endpoint",
            server.url,
            "--data-file",
            str(DATA / data),
            "--limit",
            limit,
            "--max-tokens",
            max_tokens,
            "--out",
            str(out),
        )
        assert proc.returncode == 0, proc.stderr
        assert f"{bench}:" in proc.stdout
        records = lines_of(next((out / bench).glob("*.jsonl")))
        assert len(records) == int(limit)
        for rec in records:
            assert rec["raw"].strip(), rec  # the model said something
            assert rec["timings"]["predicted_n"] > 0
            assert rec["sampling"] == {"max_tokens": int(max_tokens), "seed": 0, "temperature": 0.0}
        summary = summary_of(out, bench)
        score = summary["score"]
        assert isinstance(score, dict)
        assert score["n"] == int(limit)
        assert 0.0 <= score["low"] <= score["accuracy"] <= score["high"] <= 1.0
        speed = summary["tokens_per_s"]
        assert isinstance(speed, dict)
        assert speed["generation"] > 0
    assert "baseline_always_d" in summary_of(out, "mmlu")
    assert "subjects" in summary_of(out, "mmlu")
    assert "strict" in summary_of(out, "gsm8k")
    he = lines_of(next((out / "humaneval").glob("*.jsonl")))
    assert {r["exec_status"] for r in he} <= {"passed", "failed", "timeout"}
    report = llamasc("report", "--out", str(out))
    assert report.returncode == 0
    for bench in ("mmlu", "gsm8k", "humaneval"):
        assert bench in report.stdout


def test_a_killed_run_resumes_asking_only_the_missing_questions(
    llama_server_bin: Path, smollm2_path: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(llama_server_bin, smollm2_path, *SERVER_FLAGS)
    out = tmp_path / "out"
    args = [
        "gsm8k",
        "--endpoint",
        server.url,
        "--data-file",
        str(DATA / "gsm8k_small.jsonl"),
        "--limit",
        "5",
        "--max-tokens",
        "16",
        "--concurrency",
        "1",
        "--out",
        str(out),
    ]
    env = {**os.environ, "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamasc", "eval", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    records_dir = out / "gsm8k"
    deadline = time.monotonic() + 120
    kept: list[dict[str, object]] = []
    while time.monotonic() < deadline and proc.poll() is None:
        files = list(records_dir.glob("*.jsonl")) if records_dir.exists() else []
        if files and len(kept := lines_of(files[0])) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)  # a crash: no chance to clean up
    proc.wait(10)
    (path,) = records_dir.glob("*.jsonl")
    before = lines_of(path)  # every line is complete JSON: nothing half-written
    assert 2 <= len(before) < 5
    assert len(kept) >= 2
    done = llamasc(*args)
    assert done.returncode == 0, done.stderr
    after = lines_of(path)
    assert len(after) == 5
    assert len({r["qid"] for r in after}) == 5  # nothing asked twice
    assert after[: len(before)] == before  # old answers kept as they were
    asked_again = {r["qid"] for r in after[len(before) :]}
    assert asked_again.isdisjoint({r["qid"] for r in before})


def test_ab_of_two_flag_sets(
    llama_server_bin: Path, smollm2_path: Path, start_server, tmp_path: Path, data_dir: Path
) -> None:
    a = start_server(llama_server_bin, smollm2_path, *SERVER_FLAGS, "--cache-type-k", "f16")
    b = start_server(llama_server_bin, smollm2_path, *SERVER_FLAGS, "--cache-type-k", "q8_0")
    out = tmp_path / "out"
    args = [
        "ab",
        "--a",
        "smol:-ctk f16",
        "--b",
        "smol:--cache-type-k q8_0",
        "--endpoint-a",
        a.url,
        "--endpoint-b",
        b.url,
        "--suite",
        "mmlu,gsm8k",
        "--limit",
        "4",
        "--max-tokens",
        "16",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
    ]
    proc = llamasc(*args)
    assert proc.returncode == 0, proc.stderr
    assert "McNemar" in proc.stdout
    (report,) = (out / "ab").glob("*.json")
    comparisons = json.loads(report.read_text())["comparisons"]
    assert [c["benchmark"] for c in comparisons] == ["mmlu", "gsm8k"]
    for c in comparisons:
        assert c["n"] == 4
        counts = (c["a_only_correct"], c["b_only_correct"], c["both_correct"], c["both_wrong"])
        assert sum(counts) == 4
        assert 0.0 < c["mcnemar_exact_p"] <= 1.0
        assert c["verdict"]
        assert c["a"]["run"]["flags"] == ["--cache-type-k", "f16"]
        assert c["b"]["run"]["flags"] == ["--cache-type-k", "q8_0"]
    assert (out / "ab" / report.with_suffix(".md").name).exists()
    sizes = {p: len(lines_of(p)) for p in out.glob("*/*.jsonl")}
    assert sorted(sizes.values()) == [4, 4, 4, 4]
    # a rerun reuses every answer on disk
    again = llamasc(*args)
    assert again.returncode == 0, again.stderr
    assert {p: len(lines_of(p)) for p in out.glob("*/*.jsonl")} == sizes
