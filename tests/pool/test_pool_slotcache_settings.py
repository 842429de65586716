"""The slot cache settings reach the pool: on by default under the state home, off by flag."""

from __future__ import annotations

from pathlib import Path

from llamasc.config import ModelCatalog
from llamasc.config.settings import settings_from_sources
from llamasc.server.daemon import scheduling_config


def test_the_slot_cache_is_on_by_default_under_the_state_home(tmp_path: Path) -> None:
    settings = settings_from_sources(env={}, cli={"home": str(tmp_path)}, file_data=None)
    config = scheduling_config(settings, ModelCatalog.of([]))
    assert config["slot_cache"] == tmp_path / "slot-cache"
    assert config["slot_cache_min_tokens"] == 1024
    assert config["slot_cache_size"] == 20 * 1024**3


def test_no_slot_cache_and_the_env_turn_it_off_and_sizes_parse(tmp_path: Path) -> None:
    cli = {"home": str(tmp_path), "slot_cache": False, "slot_cache_size": "1GiB"}
    settings = settings_from_sources(env={}, cli=cli, file_data=None)
    config = scheduling_config(settings, ModelCatalog.of([]))
    assert config["slot_cache"] is None
    assert config["slot_cache_size"] == 1024**3
    env = {"LLAMASC_SLOT_CACHE": "0", "LLAMASC_HOME": str(tmp_path)}
    assert (
        scheduling_config(settings_from_sources(env=env, cli={}), ModelCatalog.of([]))["slot_cache"]
        is None
    )
