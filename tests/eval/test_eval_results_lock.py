"""One writer per results file: a second run of the same configuration stops with one line
naming the first run's pid, and the first run's file stays consistent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_test_helpers import DATA

from llamasc.eval.lock import ResultsLockedError, results_lock


def eval_cli(url: str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llamasc",
        "eval",
        "gsm8k",
        "--endpoint",
        url,
        "--data-file",
        str(DATA / "gsm8k_small.jsonl"),
        "--out",
        str(out),
        "--concurrency",
        "1",
    ]


ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}


def wait_for_lock_holder(out: Path, pid: int, proc: subprocess.Popen[bytes]) -> Path:
    """The lock file of the run ``pid``, once that run holds it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the first run ended before taking the lock"
        for lock in out.glob("gsm8k/*.jsonl.lock"):
            if lock.read_text().strip() == str(pid):
                return lock
        time.sleep(0.05)
    raise AssertionError("the first run never took the results lock")


def test_a_second_run_of_the_same_configuration_names_the_holder_and_exits(
    fake_llama_server_bin: Path, start_server, tmp_path: Path
) -> None:
    # the first run's requests never get an answer, so it holds its results file as long as
    # we let it
    server = start_server(fake_llama_server_bin, "fake.gguf", "--fake-hang-requests")
    first = subprocess.Popen(
        eval_cli(server.url, tmp_path),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_lock_holder(tmp_path, first.pid, first)
        second = subprocess.run(
            eval_cli(server.url, tmp_path),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert first.poll() is None, "the first run must still be running"
    finally:
        first.kill()
        first.wait(30)
    assert second.returncode != 0
    lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("error:")
    assert f"pid {first.pid}" in lines[0]
    assert "Traceback" not in second.stderr


def test_the_lock_is_free_again_once_its_holder_is_gone(tmp_path: Path) -> None:
    records = tmp_path / "gsm8k" / "m-1.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\n"
            "from llamasc.eval.lock import results_lock\n"
            "with results_lock(Path(sys.argv[1])):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(600)\n",
            str(records),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ResultsLockedError, match=f"pid {holder.pid}"), results_lock(records):
            pass
    finally:
        holder.kill()  # no clean-up code runs: the kernel drops the lock
        holder.wait(30)
        assert holder.stdout is not None
        holder.stdout.close()
    with results_lock(records) as lock:
        assert lock.read_text().strip() == str(os.getpid())
