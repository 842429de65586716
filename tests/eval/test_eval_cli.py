"""The eval CLI's own behaviour: self-check, report, A/B side parsing, user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_test_helpers import DATA, free_port

from llamasc.errors import ConfigError
from llamasc.eval.ab import Side


def llamasc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "llamasc", "eval", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_self_check_on_the_fixture_reports_every_solution_passing() -> None:
    proc = llamasc("humaneval", "--self-check", "--data-file", str(DATA / "humaneval_small.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert "self-check: 5/5 canonical solutions pass" in proc.stdout
    assert "sandbox layers:" in proc.stdout


def test_a_failing_self_check_exits_non_zero(tmp_path: Path) -> None:
    row = json.loads((DATA / "humaneval_small.jsonl").read_text().splitlines()[0])
    row["canonical_solution"] = "    return None\n"
    broken = tmp_path / "he.jsonl"
    broken.write_text(json.dumps(row) + "\n")
    proc = llamasc("humaneval", "--self-check", "--data-file", str(broken))
    assert proc.returncode == 1
    assert "self-check: 0/1" in proc.stdout


def test_report_on_an_empty_directory(tmp_path: Path) -> None:
    proc = llamasc("report", "--out", str(tmp_path))
    assert proc.returncode == 0
    assert "no eval results" in proc.stdout


def test_unknown_suite_and_dead_endpoint_are_one_red_line(tmp_path: Path) -> None:
    bad = llamasc("ab", "--a", "x", "--b", "y", "--suite", "mmlu,trivia", "--out", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: --suite takes")
    dead = llamasc(
        "gsm8k",
        "--endpoint",
        f"http://127.0.0.1:{free_port()}",
        "--data-file",
        str(DATA / "gsm8k_small.jsonl"),
        "--out",
        str(tmp_path),
    )
    assert dead.returncode == 1
    lines = [ln for ln in dead.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1
    assert "nothing answers at" in lines[0]
    assert "Traceback" not in dead.stderr


@pytest.mark.parametrize(
    ("text", "model", "flags"),
    [
        ("smol", "smol", None),
        ("smol:-ctk q8_0", "smol", "-ctk q8_0"),
        ("qwen2.5:7b", "qwen2.5:7b", None),  # a colon inside a model id is not flags
        ("qwen2.5:7b:--cache-type-k q8_0 -c 4096", "qwen2.5:7b", "--cache-type-k q8_0 -c 4096"),
        (":-ctk q8_0", None, "-ctk q8_0"),
    ],
)
def test_side_parsing(text: str, model: str | None, flags: str | None) -> None:
    side = Side.parse(text)
    assert (side.model, side.flags) == (model, flags)


def test_an_empty_side_is_refused() -> None:
    with pytest.raises(ConfigError):
        Side.parse("  ")
