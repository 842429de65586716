from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gguf import LlamaFileType

from gguf_factory import write_gguf, write_projector
from llamasc.config.catalog import build_catalog
from llamasc.config.settings import read_config_file, settings_from_sources
from llamasc.errors import ConfigError


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_gguf(root / "vl" / "Vision-Q4_K_M.gguf")
    write_projector(root / "vl" / "mmproj-F16.gguf")
    write_gguf(root / "Text-Q8_0.gguf", file_type=LlamaFileType.MOSTLY_Q8_0)
    return root


def _settings(tmp_path: Path, toml: str, **env: str):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "llamasc.toml"
    cfg.write_text(toml)
    return settings_from_sources(env=env, file_data=read_config_file(cfg), file_name=str(cfg))


def test_models_dirs_from_the_config_and_the_environment(models: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_gguf(other / "Extra-Q4_0.gguf")
    s = _settings(tmp_path, 'models_dirs = ["models"]\n', LLAMASC_MODELS_DIR=str(other))
    assert s.all_models_dirs == (other,)  # the environment wins over the file
    s = _settings(tmp_path, f'models_dirs = ["models", "{other}"]\n')
    ids = build_catalog(s).catalog.ids()
    assert sorted(ids) == ["extra:q4_0", "text:q8_0", "vision:q4_k_m"]


def test_a_config_entry_with_a_discovered_path_renames_that_model(
    models: Path, tmp_path: Path
) -> None:
    s = _settings(
        tmp_path,
        'models_dir = "models"\n[models.vision]\npath = "models/vl/Vision-Q4_K_M.gguf"\n'
        'env = { A = "1" }\n',
    )
    cat = build_catalog(s).catalog
    assert sorted(cat.ids()) == ["text:q8_0", "vision"]
    vision = cat.get("vision")
    assert vision.mmproj is not None
    assert vision.mmproj.name == "mmproj-F16.gguf"  # what discovery knew stays
    assert dict(vision.env) == {"A": "1"}
    assert vision.meta is not None


def test_mmproj_false_or_a_path_per_model(models: Path, tmp_path: Path) -> None:
    mine = write_projector(tmp_path / "mine.gguf")
    s = _settings(
        tmp_path,
        'models_dir = "models"\n[models."vision:q4_k_m"]\nmmproj = false\n'
        '[models."text:q8_0"]\nmmproj = "mine.gguf"\n',
    )
    cat = build_catalog(s).catalog
    assert cat.get("vision:q4_k_m").mmproj is None
    assert cat.get("text:q8_0").mmproj == mine


def test_no_mmproj_auto_turns_pairing_off(models: Path, tmp_path: Path) -> None:
    s = _settings(tmp_path, 'models_dir = "models"\n', LLAMASC_MMPROJ_AUTO="0")
    assert build_catalog(s).catalog.get("vision:q4_k_m").mmproj is None


def test_a_discovered_file_never_takes_an_id_of_the_model_map(models: Path, tmp_path: Path) -> None:
    (tmp_path / "map.json").write_text(json.dumps({"text:q8_0": str(models / "Text-Q8_0.gguf")}))
    write_gguf(tmp_path / "models" / "sub" / "Text-Q8_0.gguf")
    s = _settings(tmp_path, 'models_dir = "models"\nmodel_map_file = "map.json"\n')
    found = build_catalog(s)
    cat = found.catalog
    assert cat.get("text:q8_0").source == "model_map"
    assert cat.get("text:q8_0").meta is not None  # explicit entries get their header read too
    assert "sub/text:q8_0" in cat
    assert found.warnings


def test_an_explicit_entry_that_is_not_a_gguf_keeps_its_error(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_text("not a model at all")
    s = _settings(tmp_path, '[models.m]\npath = "m.gguf"\n')
    entry = build_catalog(s).catalog.get("m")
    assert entry.meta is None
    assert entry.error == "not a GGUF file (bad magic)"


def test_unknown_config_model_is_an_error_at_start_and_a_warning_on_rescan(
    models: Path, tmp_path: Path
) -> None:
    s = _settings(tmp_path, 'models_dir = "models"\n[models.gone]\nenv = { A = "1" }\n')
    with pytest.raises(ConfigError, match="models -> gone: no such model"):
        build_catalog(s)
    found = build_catalog(s, strict=False)
    assert "gone" not in found.catalog
    assert any("gone" in w for w in found.warnings)


def test_missing_models_dir_is_an_error_at_start_only(tmp_path: Path) -> None:
    s = _settings(tmp_path, 'models_dir = "nowhere"\n')
    with pytest.raises(ConfigError, match="models directory not found"):
        build_catalog(s)
    assert len(build_catalog(s, strict=False).catalog) == 0


def test_discovery_settings_from_options_and_environment() -> None:
    s = settings_from_sources(
        env={"LLAMASC_HF_CACHE": "1", "LLAMASC_WATCH_MODELS": "true"},
        cli={"models_dirs": ["a", "b"], "mmproj_auto": False, "watch_interval": "0.5"},
    )
    assert s.all_models_dirs == (Path("a"), Path("b"))
    assert s.hf_cache is True
    assert s.watch_models is True
    assert s.watch_interval == 0.5
    assert s.mmproj_auto is False
    env_dirs = settings_from_sources(env={"LLAMASC_MODELS_DIR": f"x{os.pathsep}y"})
    assert env_dirs.all_models_dirs == (Path("x"), Path("y"))
    with pytest.raises(ConfigError, match="--watch-interval: must be a number of seconds > 0"):
        settings_from_sources(env={}, cli={"watch_interval": "0"})


def test_hf_cache_models_come_through_the_catalog(tmp_path: Path) -> None:
    snap = tmp_path / "hub" / "models--o--r" / "snapshots" / ("a" * 40)
    write_gguf(snap / "r-Q4_K_M.gguf")
    (tmp_path / "hub" / "models--o--r" / "refs").mkdir()
    (tmp_path / "hub" / "models--o--r" / "refs" / "main").write_text("a" * 40)
    s = settings_from_sources(env={"LLAMASC_HF_CACHE": "1"})
    found = build_catalog(s, env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert found.catalog.ids() == ["o/r:Q4_K_M"]
    assert found.catalog.get("o/r:Q4_K_M").source == "hf_cache"


def test_rescans_read_no_header_of_unchanged_explicit_or_discovered_files(
    models: Path, tmp_path: Path
) -> None:
    from llamasc.config.discovery import Scanner

    write_gguf(tmp_path / "pinned.gguf")
    s = _settings(tmp_path, 'models_dir = "models"\n[models.pinned]\npath = "pinned.gguf"\n')
    scanner = Scanner()
    first = build_catalog(s, scanner=scanner)
    reads = scanner.cache.reads
    again = build_catalog(s, scanner=scanner, strict=False)
    assert scanner.cache.reads == reads
    assert again.catalog.models == first.catalog.models
