"""The results file: whole-line appends, torn-line repair, --fresh, resume keys."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from llamasc.bench.records import ResultStore, done_keys, read_records, record_key

RECORD = st.fixed_dictionaries(
    {
        "key": st.text(min_size=1, max_size=10),
        "status": st.sampled_from(["ok", "error", "unsupported"]),
        "note": st.text(max_size=40),  # any unicode, including newlines and quotes
        "x": st.floats(allow_nan=False) | st.integers() | st.none(),
    }
)


def test_append_then_load(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "sub" / "r.jsonl")
    with store:
        store.append({"key": "a", "status": "ok", "text": "line\nbreak ü"})
        store.append({"key": "b", "status": "error"})
    loaded = store.load()
    assert [r["key"] for r in loaded.records] == ["a", "b"]
    assert loaded.records[0]["text"] == "line\nbreak ü"
    assert store.path.read_bytes().count(b"\n") == 2  # one line per record


def test_torn_last_line_is_reported_and_truncated_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"key":"a","status":"ok"}\n{"key":"b","sta')
    store = ResultStore(path)
    loaded = store.load()
    assert [r["key"] for r in loaded.records] == ["a"]
    assert loaded.torn_tail == b'{"key":"b","sta'
    assert path.read_bytes() == b'{"key":"a","status":"ok"}\n'
    with store:
        store.append({"key": "c", "status": "ok"})
    assert [r["key"] for r in store.load().records] == ["a", "c"]


def test_reading_for_a_report_never_modifies_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    data = b'{"key":"a"}\nnot json\n[1]\n{"key":"b"'
    path.write_bytes(data)
    loaded = read_records(path)
    assert [r["key"] for r in loaded.records] == ["a"]
    assert loaded.bad_lines == [2, 3]
    assert loaded.torn_tail == b'{"key":"b"'
    assert path.read_bytes() == data


@settings(max_examples=40, deadline=None)
@given(records=st.lists(RECORD, min_size=1, max_size=6), cut=st.integers(min_value=0))
def test_a_crash_at_any_byte_loses_at_most_the_last_record(
    records: list[dict[str, object]], cut: int
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.jsonl"
        with ResultStore(path) as store:
            for rec in records:
                store.append(rec)
        data = path.read_bytes()
        cut %= len(data) + 1
        path.write_bytes(data[:cut])  # what a crash mid-write can leave
        loaded = ResultStore(path).load()
        complete = data[:cut].count(b"\n")
        assert loaded.records == [json.loads(json.dumps(r)) for r in records[:complete]]
        kept = data[:cut]
        assert path.read_bytes() == kept[: kept.rfind(b"\n") + 1]


def test_fresh_moves_the_old_file_aside(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"key":"a"}\n')
    store = ResultStore(path)
    first = store.move_aside()
    assert first is not None
    assert first.read_text() == '{"key":"a"}\n'
    assert not path.exists()
    path.write_text('{"key":"b"}\n')
    second = store.move_aside()
    assert second is not None
    assert second != first
    assert second.exists()
    assert store.move_aside() is None


def test_done_keys_count_ok_and_unsupported_only() -> None:
    recs = [
        {"key": "a", "status": "ok"},
        {"key": "b", "status": "error"},
        {"key": "c", "status": "unsupported"},
        {"status": "ok"},
    ]
    assert done_keys(recs) == {"a", "c"}
    assert done_keys(recs, retry_unsupported=True) == {"a"}


def test_record_key_depends_on_every_identity_field() -> None:
    base = {"host": "h", "model": "m", "arm": "a", "prompt_id": "p", "rep": 0, "build": "b"}
    keys = {record_key(**base)}  # type: ignore[arg-type]
    for field, other in [
        ("host", "h2"),
        ("model", "m2"),
        ("arm", "a2"),
        ("prompt_id", "p2"),
        ("rep", 1),
        ("build", "b2"),
    ]:
        keys.add(record_key(**{**base, field: other}))  # type: ignore[arg-type]
    assert len(keys) == 7
