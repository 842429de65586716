"""`llamasc bench` as a user runs it, interrupted: Ctrl-C (SIGINT) and kill -9 mid-sweep,
then rerun. Only the missing requests are measured, none twice, and no server is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from bench_helpers import (
    TINY_PROMPTS,
    fake_server_wrapper,
    ok_records,
    processes_with,
    read_jsonl,
    wait_no_processes,
)

EXPECTED = 2 * 2 * 2  # arms (mtp-off, ngram) x prompts x reps


def _cmd(tmp_path: Path, models: Path, binary: Path, out: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "llamasc", "bench", "--host", "localhost"),
        *("--model", f"alpha={models / 'alpha.gguf'}"),
        *("--arm", "ngram=--spec-type ngram-simple", "--arms", "mtp-off,ngram"),
        *("--llama-server", str(binary), "--prompts", str(TINY_PROMPTS)),
        *("--reps", "2", "--max-tokens", "4", "--ctx-size", "512"),
        *("--output", str(out), "--start-timeout", "30"),
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "LLAMASC_HOME": str(tmp_path / "home"), "COLUMNS": "120"}


def _wait_for_records(out: Path, n: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while len(ok_records(out)) < n:
        assert proc.poll() is None, "bench ended before it was interrupted"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


@pytest.fixture
def bench_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    models = tmp_path / "models"
    models.mkdir()
    (models / "alpha.gguf").write_bytes(b"GGUF")
    # a little time per token, so that requests are in flight when the signal comes
    binary = fake_server_wrapper(tmp_path / "bin", {"FAKE_LLAMA_TOKEN_DELAY": "0.02"})
    return models, binary, tmp_path / "results.jsonl"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_sweep_resumes_without_duplicates(
    sig: signal.Signals, tmp_path: Path, bench_setup: tuple[Path, Path, Path]
) -> None:
    models, binary, out = bench_setup
    cmd, env = _cmd(tmp_path, models, binary, out), _env(tmp_path)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_records(out, 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    measured_before = ok_records(out)
    assert 3 <= len(measured_before) < EXPECTED
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert b"Traceback" not in err
        # Ctrl-C stops the server of the current cell before the bench exits
        assert wait_no_processes(str(models), timeout=5) == []
    else:
        assert proc.returncode == -signal.SIGKILL
        assert processes_with(str(models)), "kill -9 leaves the current server orphaned"

    rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr.decode()
    if sig == signal.SIGKILL:
        assert b"earlier bench left running" in rerun.stderr
    records = read_jsonl(out)
    ok = [r for r in records if r["status"] == "ok"]
    keys = Counter(r["key"] for r in ok)
    assert len(ok) == EXPECTED
    assert max(keys.values()) == 1  # nothing measured twice
    assert ok[: len(measured_before)] == measured_before  # the first run's records stand
    assert f"{len(measured_before)} already done" in rerun.stdout.decode()
    assert wait_no_processes(str(models)) == []


def test_sigterm_is_handled_like_ctrl_c(
    tmp_path: Path, bench_setup: tuple[Path, Path, Path]
) -> None:
    models, binary, out = bench_setup
    proc = subprocess.Popen(
        _cmd(tmp_path, models, binary, out),
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_for_records(out, 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert wait_no_processes(str(models), timeout=5) == []
