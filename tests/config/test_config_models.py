from __future__ import annotations

import json
from pathlib import Path

import pytest

from gguf_factory import write_gguf, write_projector
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
    for name in ("qwen-Q4_0.gguf", "sub/llama-Q8_0.gguf"):
        write_gguf(tmp_path / name)
    write_projector(tmp_path / "mmproj-qwen.gguf")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "not-a-model.gguf").write_bytes(b"GGUF")
    ids = [e.id for e in scan_models_dir(tmp_path)]
    assert sorted(ids) == ["llama:q8_0", "qwen:q4_0"]


def test_models_dir_missing_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="models directory not found"):
        scan_models_dir(tmp_path / "missing")


def test_an_id_of_the_model_map_is_not_taken_by_a_discovered_file(tmp_path: Path) -> None:
    write_gguf(tmp_path / "a.gguf", file_type=None)
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"a": "/elsewhere/a.gguf"}))
    cat = discover_models(model_map_file=f, models_dir=tmp_path)
    assert cat.get("a").path == Path("/elsewhere/a.gguf")
    assert cat.get(f"{tmp_path.name}/a").path == tmp_path / "a.gguf"


def test_duplicate_explicit_ids_are_refused() -> None:
    with pytest.raises(ConfigError, match="defined twice"):
        ModelCatalog.of([ModelEntry("a", Path("a.gguf")), ModelEntry("a", Path("b.gguf"))])


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
