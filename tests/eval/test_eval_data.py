"""Loading the benchmarks: local files in the HF schemas, stable ids, selection, offline hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llamasc.errors import DataError
from llamasc.eval.data import load_hub, load_items, read_data_file, select, to_items

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("which", "name", "count"),
    [
        ("mmlu", "mmlu_small.jsonl", 10),
        ("gsm8k", "gsm8k_small.jsonl", 6),
        ("humaneval", "humaneval_small.jsonl", 5),
    ],
)
def test_fixtures_load_with_unique_stable_ids(which: str, name: str, count: int) -> None:
    items = load_items(which, DATA / name)  # type: ignore[arg-type]
    assert len(items) == count
    assert len({i.id for i in items}) == count
    again = load_items(which, DATA / name)  # type: ignore[arg-type]
    assert [i.id for i in items] == [i.id for i in again]


def test_mmlu_ids_ignore_file_order_and_number_duplicates() -> None:
    rows = read_data_file(DATA / "mmlu_small.jsonl")
    forward = {i.row["question"]: i.id for i in to_items("mmlu", rows, "t")}
    backward = {i.row["question"]: i.id for i in to_items("mmlu", list(reversed(rows)), "t")}
    assert forward == backward
    dup = to_items("mmlu", [rows[0], rows[0]], "t")
    assert dup[1].id == dup[0].id + "#2"


def test_letter_answers_are_accepted_for_mmlu() -> None:
    row = {"question": "q", "subject": "s", "choices": ["a", "b", "c", "d"], "answer": "c"}
    assert to_items("mmlu", [row], "t")[0].row["answer"] == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "q", "subject": "s", "choices": ["a"], "answer": 0}', "4 choices"),
        ('{"question": "q", "subject": "s", "answer": 0}', r"missing field\(s\) choices"),
        ('{"question": "q", "subject": "s", "choices": ["a","b","c","d"], "answer": 7}', "0-3"),
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_bad_rows_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=message) as err:
        load_items("mmlu", path)
    assert "bad.jsonl" in str(err.value)


def test_parquet_in_the_same_schema(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = read_data_file(DATA / "gsm8k_small.jsonl")
    path = tmp_path / "gsm8k.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    from_parquet = load_items("gsm8k", path)
    assert [i.id for i in from_parquet] == [
        i.id for i in load_items("gsm8k", DATA / "gsm8k_small.jsonl")
    ]


def test_selection_is_deterministic_and_grows_as_a_superset() -> None:
    items = load_items("mmlu", DATA / "mmlu_small.jsonl")
    three = select(items, 3, seed=7)
    assert [i.id for i in three] == [i.id for i in select(items, 3, seed=7)]
    six = select(items, 6, seed=7)
    assert [i.id for i in six[:3]] == [i.id for i in three]
    assert len(select(items, None, seed=0)) == len(items)
    with pytest.raises(DataError):
        select(items, -1, seed=0)


def test_different_seeds_pick_differently() -> None:
    items = load_items("mmlu", DATA / "mmlu_small.jsonl")
    picks = {tuple(sorted(i.id for i in select(items, 3, seed=s))) for s in range(6)}
    assert len(picks) > 1


def test_hub_offline_fails_fast_with_both_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # load_hub sets these for the process; registering them lets monkeypatch restore them
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "20")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        load_hub("gsm8k")
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert "openai/gsm8k" in message
    assert "--data-file" in message
    assert "hub" in message
    assert "\n" not in message


def test_cli_without_hub_or_file_prints_one_red_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"),
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamasc",
            "eval",
            "gsm8k",
            "--endpoint",
            "http://127.0.0.1:9",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    assert "--data-file" in lines[0]
    assert "Traceback" not in proc.stderr


def test_jsonl_rows_keep_their_schema(tmp_path: Path) -> None:
    path = tmp_path / "he.jsonl"
    row = json.loads((DATA / "humaneval_small.jsonl").read_text().splitlines()[0])
    path.write_text(json.dumps(row) + "\n\n")
    (item,) = load_items("humaneval", path)
    assert item.id == row["task_id"]
    assert item.row["entry_point"] == row["entry_point"]
