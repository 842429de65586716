"""`llamasc models`: discovery's view of the models folders, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gguf import PoolingType

from gguf_factory import write_gguf, write_projector
from llamasc.cli import main


def _run(argv: list[str]) -> None:
    """``llamasc ARGV`` in-process; it must exit 0."""

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_gguf(root / "vl" / "Vision-Q4_K_M.gguf", size_label="8B", context_length=32768)
    write_projector(root / "vl" / "mmproj-BF16.gguf")
    write_gguf(root / "e" / "Embed-F16.gguf", arch="bert", pooling=PoolingType.CLS)
    (root / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    return root


def test_models_table_lists_models_and_bad_files(
    folder: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(["models", "--models-dir", str(folder), "--all"])
    out = capsys.readouterr().out
    assert "vision:q4_k_m" in out
    assert "embed:f16" in out
    assert "embedding" in out
    assert "8B" in out
    assert "32768" in out
    assert "bad" in out
    assert "broken.gguf" in out
    assert "truncated GGUF" in out
    assert "mmproj-BF16.gguf: vision projector" in out


def test_models_json(folder: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(["models", "--json", "--models-dir", str(folder)])
    data = json.loads(capsys.readouterr().out)
    by_id = {m["id"]: m for m in data["models"]}
    assert sorted(by_id) == ["embed:f16", "vision:q4_k_m"]
    assert by_id["vision:q4_k_m"]["mmproj"] == str(folder / "vl" / "mmproj-BF16.gguf")
    assert by_id["vision:q4_k_m"]["meta"]["vision"] is True
    assert by_id["embed:f16"]["meta"]["type"] == "embedding"
    assert [b["path"] for b in data["bad"]] == [str(folder / "broken.gguf")]
    _run(["models", "--json", "--no-mmproj-auto", "--models-dir", str(folder)])
    data = json.loads(capsys.readouterr().out)
    assert all(m["mmproj"] is None for m in data["models"])


def test_missing_folder_is_one_line_and_exit_2(
    tmp_path: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["models", "--models-dir", str(tmp_path / "nope")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: models directory not found")
    assert len(err.splitlines()) == 1
