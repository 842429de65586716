"""The scheduling settings: file, environment and command-line forms, and their errors."""

from __future__ import annotations

import pytest

from llamasc.config.scheduling import check_model_refs, parse_bytes, parse_memory_budget
from llamasc.config.settings import parse_config_text, settings_from_sources
from llamasc.errors import ConfigError

GIB = 1024**3

TOML = """
memory_budget = "cuda0=22GiB,host=48GiB"
max_wait = 4
min_resident = 1.5
preload = ["smol"]
ttl = 300

[models.smol]
path = "smol.gguf"
ttl = 0
pin = true
priority = 5
concurrency = 2
send_loading_state = true
args = ["-c", "4096"]

[groups.coders]
members = ["smol", "gemma"]
exclusive = false
"""


def test_every_scheduling_field_is_read_from_the_file() -> None:
    data = parse_config_text(TOML, fmt="toml", source="c.toml")
    s = settings_from_sources(env={}, file_data=data)
    assert s.memory_budget == {"cuda0": 22 * GIB, "host": 48 * GIB}
    assert (s.max_wait, s.min_resident, s.ttl, s.preload) == (4.0, 1.5, 300.0, ("smol",))
    m = s.models["smol"]
    assert (m.ttl, m.pin, m.priority, m.concurrency) == (0.0, True, 5, 2)
    assert m.send_loading_state
    assert m.args == ("-c", "4096")
    g = s.groups["coders"]
    assert g.members == ("smol", "gemma")
    assert (g.swap, g.exclusive, g.persistent) == (True, False, False)  # llama-swap defaults


def test_defaults() -> None:
    s = settings_from_sources(env={})
    assert s.memory_budget is None  # measured at start-up
    assert (s.max_wait, s.min_resident, s.ttl, s.preload, s.groups) == (10.0, 2.0, 0.0, (), {})
    assert s.slot_cache
    assert (s.slot_cache_min_tokens, s.slot_cache_size) == (1024, 20 * GIB)


def test_environment_and_command_line_forms() -> None:
    env = {
        "LLAMASC_MEMORY_BUDGET": "host=1GiB",
        "LLAMASC_MAX_WAIT": "3",
        "LLAMASC_PRELOAD": "a, b",
        "LLAMASC_SLOT_CACHE": "0",
        "LLAMASC_SLOT_CACHE_SIZE": "1GiB",
    }
    s = settings_from_sources(env=env, cli={"max_wait": "7", "ttl": "60"})
    assert s.memory_budget == {"host": GIB}
    assert (s.max_wait, s.ttl, s.preload) == (7.0, 60.0, ("a", "b"))
    assert not s.slot_cache
    assert s.slot_cache_size == GIB


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"memory_budget": "cuda0"}, "--memory-budget: must be DEVICE=SIZE pairs"),
        ({"memory_budget": "cuda0=lots"}, "--memory-budget: must be DEVICE=SIZE pairs"),
        ({"max_wait": "-1"}, "--max-wait: must be a number of seconds >= 0, got '-1'"),
        ({"ttl": "soon"}, "--ttl: must be a number of seconds >= 0"),
        ({"slot_cache_size": "big"}, "--slot-cache-size: must be a size"),
    ],
)
def test_bad_values_are_one_line_naming_the_option(cli: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        settings_from_sources(env={}, cli=cli)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"models": {"a": {"ttl": -1}}}, "models -> a -> ttl"),
        ({"models": {"a": {"concurrency": 0}}}, "models -> a -> concurrency"),
        ({"models": {"a": {"pinned": True}}}, "models -> a -> pinned: unknown setting"),
        ({"groups": {"g": {"members": []}}}, "groups -> g -> members"),
        ({"groups": {"g": {"members": ["a"], "swapp": True}}}, "groups -> g -> swapp"),
        (
            {"groups": {"g": {"members": ["a"]}, "h": {"members": ["a"]}}},
            "model 'a' is in groups 'g' and 'h'",
        ),
    ],
)
def test_bad_file_values_name_their_path(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_sources(env={}, file_data=data)


def test_sizes_and_budgets() -> None:
    assert parse_bytes("22GiB") == 22 * GIB
    assert parse_bytes("1.5 GB") == 1_500_000_000
    assert parse_bytes(512) == 512
    assert parse_memory_budget("auto") is None
    assert parse_memory_budget({"CUDA0": "1GiB", "cpu": 10}) == {"cuda0": GIB, "host": 10}
    # an RPC worker's device, named by its --rpc address
    assert parse_memory_budget("host=1GiB,rpc:10.0.0.2:50052=24GiB,rpc:[::1]:50053=1GiB") == {
        "host": GIB,
        "rpc:10.0.0.2:50052": 24 * GIB,
        "rpc:[::1]:50053": GIB,
    }
    for bad in ("host=1GiB,host=2GiB", "=1", "host=-1", "host=1XB", "rpc:w=1GiB", "rpc:=1"):
        with pytest.raises(ValueError):
            parse_memory_budget(bad)


def test_ids_in_preload_and_groups_must_name_models() -> None:
    s = settings_from_sources(
        env={}, file_data={"preload": ["x"], "groups": {"g": {"members": ["a", "y"]}}}
    )
    assert check_model_refs({"a"}, s.preload, s.groups) == [
        "preload: unknown model 'x'",
        "groups -> g -> members: unknown model 'y'",
    ]
