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


HELD_AFTER = 3  # measured records before the fake holds the next request


def _wait_until_held(out: Path, hold: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until the sweep has HELD_AFTER records and its next request is held by the fake."""
    count = Path(f"{hold}.count")
    deadline = time.monotonic() + 60
    while len(ok_records(out)) < HELD_AFTER or _size(count) <= 1 + HELD_AFTER:
        assert proc.poll() is None, "bench ended before it was interrupted"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.fixture
def bench_setup(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """The fake holds the request after the first cell's warm-up and HELD_AFTER measured
    ones while the hold file exists: the sweep is then mid-way for sure when the signal
    comes, however fast or slow the machine is (racing a sweep that had already finished
    was this test's flake)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "alpha.gguf").write_bytes(b"GGUF")
    hold = tmp_path / "hold"
    hold.touch()
    env = {
        "FAKE_LLAMA_TOKEN_DELAY": "0.02",
        "FAKE_LLAMA_HOLD_FILE": str(hold),
        "FAKE_LLAMA_HOLD_AFTER": str(1 + HELD_AFTER),
    }
    binary = fake_server_wrapper(tmp_path / "bin", env)
    return models, binary, tmp_path / "results.jsonl", hold


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_sweep_resumes_without_duplicates(
    sig: signal.Signals, tmp_path: Path, bench_setup: tuple[Path, Path, Path, Path]
) -> None:
    models, binary, out, hold = bench_setup
    cmd, env = _cmd(tmp_path, models, binary, out), _env(tmp_path)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_until_held(out, hold, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    measured_before = ok_records(out)
    assert len(measured_before) == HELD_AFTER  # the held request was not recorded
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert b"Traceback" not in err
        # Ctrl-C stops the server of the current cell before the bench exits
        assert wait_no_processes(str(models), timeout=5) == []
    else:
        assert proc.returncode == -signal.SIGKILL
        # the daemon's no-orphan rule: on Linux the server dies with the bench (its
        # parent-death signal), elsewhere the rerun stops what was left
        if sys.platform.startswith("linux"):
            assert wait_no_processes(str(models), timeout=2) == []
        else:
            assert processes_with(str(models)), "kill -9 leaves the current server orphaned"

    hold.unlink()
    rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr.decode()
    if sig == signal.SIGKILL and not sys.platform.startswith("linux"):
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
    tmp_path: Path, bench_setup: tuple[Path, Path, Path, Path]
) -> None:
    models, binary, out, hold = bench_setup
    proc = subprocess.Popen(
        _cmd(tmp_path, models, binary, out),
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_until_held(out, hold, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert wait_no_processes(str(models), timeout=5) == []
