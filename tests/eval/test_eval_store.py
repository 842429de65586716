"""The records file: one complete line per answer, corrupt lines skipped, keys that matter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamasc.eval.store import ResultStore, RunSpec, atomic_write_text


def spec(**changes: object) -> RunSpec:
    base: dict[str, object] = {
        "benchmark": "gsm8k",
        "endpoint": "http://127.0.0.1:8402",
        "model": "smol",
        "flags": ("--cache-type-k", "q8_0"),
        "prompt_version": "gsm8k-x1-abc",
        "sampling": {"temperature": 0.0, "max_tokens": 64, "seed": 0},
    }
    base.update(changes)
    return RunSpec(**base)  # type: ignore[arg-type]


def record(s: RunSpec, qid: str) -> dict[str, object]:
    return {"key": s.key(qid), "qid": qid, "correct": True, "raw": "Answer: 1\n\u00e9"}


@pytest.mark.parametrize(
    "change",
    [
        {"benchmark": "mmlu"},
        {"endpoint": "http://127.0.0.1:9000"},
        {"model": "other"},
        {"flags": ("--cache-type-k", "f16")},
        {"flags": ()},
        {"prompt_version": "gsm8k-x2-abc"},
        {"sampling": {"temperature": 0.0, "max_tokens": 65, "seed": 0}},
        {"sampling": {"temperature": 0.0, "max_tokens": 64, "seed": 1}},
    ],
)
def test_every_part_of_the_key_matters(change: dict[str, object]) -> None:
    assert spec(**change).key("q1") != spec().key("q1")
    assert spec(**change).run_id != spec().run_id


def test_key_ignores_sampling_dict_order() -> None:
    a = spec(sampling={"seed": 0, "max_tokens": 64, "temperature": 0.0})
    assert a.key("q1") == spec().key("q1")


def test_append_then_load(tmp_path: Path) -> None:
    s = spec()
    store = ResultStore(tmp_path, s)
    for qid in ("q1", "q2", "q3"):
        store.append(record(s, qid))
    store.close()
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert all(json.loads(line)["qid"] for line in lines)
    loaded = ResultStore(tmp_path, s).load()
    assert sorted(r["qid"] for r in loaded.records.values()) == ["q1", "q2", "q3"]
    assert loaded.corrupt_lines == []


def test_corrupt_and_torn_lines_are_skipped_and_the_next_append_stands_alone(
    tmp_path: Path,
) -> None:
    s = spec()
    store = ResultStore(tmp_path, s)
    store.append(record(s, "q1"))
    store.close()
    with store.path.open("ab") as fh:
        fh.write(b"{not json at all}\n")
        fh.write(json.dumps(record(s, "q2")).encode()[:25])  # a crash mid-write
    loaded = ResultStore(tmp_path, s).load()
    assert list(r["qid"] for r in loaded.records.values()) == ["q1"]
    assert loaded.corrupt_lines == [2, 3]
    again = ResultStore(tmp_path, s)
    again.append(record(s, "q2"))
    again.close()
    final = ResultStore(tmp_path, s).load()
    assert sorted(r["qid"] for r in final.records.values()) == ["q1", "q2"]
    assert final.corrupt_lines == [2, 3]


def test_records_of_another_configuration_are_not_reused(tmp_path: Path) -> None:
    s = spec()
    store = ResultStore(tmp_path, s)
    store.append(record(spec(prompt_version="old"), "q1"))  # same file, stale key
    store.close()
    assert ResultStore(tmp_path, s).load().records == {}


def test_fresh_moves_answers_aside(tmp_path: Path) -> None:
    s = spec()
    store = ResultStore(tmp_path, s)
    store.append(record(s, "q1"))
    store.close()
    moved = store.fresh()
    assert moved is not None
    assert moved.exists()
    assert not store.path.exists()
    assert ResultStore(tmp_path, s).load().records == {}


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "summary.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]
