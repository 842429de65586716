from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamasc.config import (
    DEMO_MODEL_ID,
    ModelCatalog,
    ModelEntry,
    discover_models,
    load_model_map,
    parse_model_map,
    scan_models_dir,
)
from llamasc.errors import ConfigError, UnknownModelError


def test_model_map_accepts_a_bom_and_resolves_relative_paths(tmp_path: Path) -> None:
    f = tmp_path / "models.json"
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps({"a": "a.gguf", "b": "/abs/b.gguf"}).encode())
    entries = load_model_map(f)
    assert [(e.id, e.path) for e in entries] == [
        ("a", tmp_path / "a.gguf"),
        ("b", Path("/abs/b.gguf")),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": "x.gguf",\n "b": }', r"models\.json:2: invalid JSON"),
        ('["x.gguf"]', r"models\.json:1: expected a JSON object"),
        ('{\n"a": "x.gguf",\n"b": 3\n}', r"models\.json:3: model 'b': path must be"),
        ('{\n"": "x.gguf"\n}', r"models\.json:2: model id must be a non-empty string"),
    ],
)
def test_malformed_model_map_names_file_line_and_reason(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_model_map(text, source="models.json")


def test_model_map_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "m.json"
    f.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_model_map(f)


def test_missing_model_map_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model map file not found"):
        load_model_map(tmp_path / "nope.json")


def test_models_dir_finds_ggufs_recursively_and_skips_mmproj(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("qwen.gguf", "sub/llama.gguf", "mmproj-qwen.gguf", "notes.txt"):
        (tmp_path / name).write_bytes(b"GGUF")
    ids = [e.id for e in scan_models_dir(tmp_path)]
    assert sorted(ids) == ["llama", "qwen"]


def test_models_dir_missing_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="models directory not found"):
        scan_models_dir(tmp_path / "missing")


def test_duplicate_ids_across_sources_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"a": "/elsewhere/a.gguf"}))
    with pytest.raises(ConfigError, match="defined twice"):
        discover_models(model_map_file=f, models_dir=tmp_path)


def test_unknown_model_lists_known_ids() -> None:
    cat = ModelCatalog.of([ModelEntry("b", Path("b.gguf")), ModelEntry("a", Path("a.gguf"))])
    with pytest.raises(UnknownModelError, match="known models: a, b"):
        cat.get("c")
    assert cat.get("a").path == Path("a.gguf")


@pytest.mark.real
def test_demo_model_is_found_when_nothing_is_configured(smollm2_path: Path) -> None:
    cat = discover_models()
    assert cat.ids() == [DEMO_MODEL_ID]
    assert cat.get(DEMO_MODEL_ID).path == smollm2_path
    assert smollm2_path.read_bytes()[:4] == b"GGUF"
