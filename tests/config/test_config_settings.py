"""Daemon settings: sources and precedence, llama-sidecar's variables, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamasc.config.settings import (
    Settings,
    check_bind_security,
    default_home,
    is_loopback,
    parse_config_text,
    parse_size,
    read_config_file,
    settings_from_sources,
    split_bind,
)
from llamasc.errors import ConfigError


def test_defaults_match_llama_sidecar() -> None:
    s = settings_from_sources(env={})
    assert (s.host, s.port) == ("127.0.0.1", 8402)
    assert s.port_range == (8500, 8599)
    assert s.max_sidecars == 2
    assert s.health_timeout == 60
    assert s.health_interval == 30
    assert s.body_limit == 32 * 1024 * 1024
    assert s.base_args is None  # llamasc.flags.DEFAULT_BASE_ARGS
    assert s.api_key is None


def test_llama_sidecar_environment_is_read() -> None:
    env = {
        "LLAMA_SERVER_BIN": "/opt/ls",
        "MODEL_DIR_MAP_FILE": "/etc/models.json",
        "LLAMA_SIDECAR_BIND": "127.0.0.1:9000",
        "PORT_RANGE": "9100-9110",
        "MAX_SIDECARS": "3",
        "LOG_LEVEL": "warn",
        "BASE_ARGS": '["-ngl", "99", "--no-mmap"]',
        "HEALTH_TIMEOUT_SECONDS": "12.5",
        "HEALTH_INTERVAL_SECONDS": "4",
        "LLAMASC_API_KEY": "k",
        "LLAMASC_BODY_LIMIT": "1MiB",
    }
    s = settings_from_sources(env=env)
    assert s.llama_server_bin == Path("/opt/ls")
    assert s.model_map_file == Path("/etc/models.json")
    assert s.port == 9000
    assert s.port_range == (9100, 9110)
    assert s.max_sidecars == 3
    assert s.log_level == "WARNING"
    assert s.base_args == ("-ngl", "99", "--no-mmap")
    assert s.health_timeout == 12.5
    assert s.health_interval == 4
    assert s.api_key == "k"
    assert s.body_limit == 1024 * 1024


def test_precedence_cli_over_env_over_file() -> None:
    file_data = {"max_sidecars": 5, "port_range": "9000-9001", "queue_timeout": 9}
    env = {"MAX_SIDECARS": "4", "PORT_RANGE": "9100-9101"}
    s = settings_from_sources(cli={"max_sidecars": "3"}, env=env, file_data=file_data)
    assert s.max_sidecars == 3
    assert s.port_range == (9100, 9101)
    assert s.queue_timeout == 9
    # an empty variable counts as unset; None on the command line means "not given"
    s = settings_from_sources(cli={"max_sidecars": None}, env={"MAX_SIDECARS": ""})
    assert s.max_sidecars == 2


def test_overlap_swaps_is_off_unless_asked() -> None:
    assert settings_from_sources(env={}).overlap_swaps is False
    assert settings_from_sources(env={"LLAMASC_OVERLAP_SWAPS": "1"}).overlap_swaps is True
    assert settings_from_sources(env={}, file_data={"overlap_swaps": True}).overlap_swaps is True
    s = settings_from_sources(cli={"overlap_swaps": True}, env={"LLAMASC_OVERLAP_SWAPS": "0"})
    assert s.overlap_swaps is True
    with pytest.raises(ConfigError, match="LLAMASC_OVERLAP_SWAPS: must be true or false"):
        settings_from_sources(env={"LLAMASC_OVERLAP_SWAPS": "sometimes"})


@pytest.mark.parametrize(
    ("sources", "line"),
    [
        ({"env": {"MAX_SIDECARS": "abc"}}, "MAX_SIDECARS: must be an integer >= 1, got 'abc'"),
        ({"env": {"MAX_SIDECARS": "0"}}, "MAX_SIDECARS: must be an integer >= 1, got '0'"),
        ({"cli": {"max_sidecars": "-1"}}, "--max-sidecars: must be an integer >= 1, got '-1'"),
        ({"env": {"PORT_RANGE": "9-2"}}, "PORT_RANGE: must be a range of ports"),
        ({"env": {"PORT_RANGE": "a-b"}}, "PORT_RANGE: must be a range of ports"),
        ({"env": {"BASE_ARGS": "-c 5"}}, "BASE_ARGS: must be a JSON array of strings"),
        ({"env": {"BASE_ARGS": "[1]"}}, "BASE_ARGS: must be a JSON array of strings"),
        ({"env": {"LLAMA_SIDECAR_BIND": "8402"}}, "LLAMA_SIDECAR_BIND: must be HOST:PORT"),
        ({"env": {"LLAMA_SIDECAR_BIND": "::1:80"}}, "LLAMA_SIDECAR_BIND: must be HOST:PORT"),
        ({"env": {"LOG_LEVEL": "loud"}}, "LOG_LEVEL: must be one of DEBUG"),
        ({"env": {"HEALTH_TIMEOUT_SECONDS": "0"}}, "HEALTH_TIMEOUT_SECONDS: must be a number"),
        ({"env": {"LLAMASC_BODY_LIMIT": "3 parsecs"}}, "LLAMASC_BODY_LIMIT: must be a size"),
        ({"file_data": {"max_sidecar": 2}}, "cfg.toml: max_sidecar: unknown setting"),
        ({"file_data": {"models": {"a": {"pth": "x"}}}}, "cfg.toml: models -> a -> pth:"),
    ],
)
def test_invalid_values_are_one_line_naming_the_setting(
    sources: dict[str, object], line: str
) -> None:
    kwargs: dict[str, object] = {"env": {}, **sources}
    with pytest.raises(ConfigError) as exc:
        settings_from_sources(file_name="cfg.toml", **kwargs)  # type: ignore[arg-type]
    assert str(exc.value).startswith(line)
    assert "\n" not in str(exc.value)
    assert exc.value.details == ()


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8402", ("127.0.0.1", 8402)),
        ("[::1]:80", ("::1", 80)),
        ("localhost:0", ("localhost", 0)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_split_bind(bind: str, expected: tuple[str, int]) -> None:
    assert split_bind(bind) == expected


@pytest.mark.parametrize("bind", ["", "8402", ":80", "h:", "h:x", "h:70000", "::1:80", "[::1:80"])
def test_split_bind_refuses(bind: str) -> None:
    with pytest.raises(ValueError):
        split_bind(bind)


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from(["", "b", "KiB", "MiB", "k"]))
def test_parse_size_units(n: int, unit: str) -> None:
    factor = {"": 1, "b": 1, "KiB": 1024, "MiB": 1024**2, "k": 1000}[unit]
    assert parse_size(f"{n}{unit}") == n * factor


@pytest.mark.parametrize(
    ("host", "loop"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.2", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_non_loopback_bind_needs_a_key_or_insecure() -> None:
    open_bind = {"bind": "0.0.0.0:8402"}
    with pytest.raises(ConfigError, match="--insecure"):
        check_bind_security(settings_from_sources(env={}, cli=open_bind))
    check_bind_security(settings_from_sources(env={}, cli={**open_bind, "api_key": "k"}))
    check_bind_security(settings_from_sources(env={}, cli={**open_bind, "insecure": True}))
    check_bind_security(settings_from_sources(env={}))


def test_default_home_per_platform(tmp_path: Path) -> None:
    assert default_home({"LLAMASC_HOME": str(tmp_path)}, "linux") == tmp_path
    assert default_home({"LOCALAPPDATA": "C:/Users/u/AppData/Local"}, "win32") == Path(
        "C:/Users/u/AppData/Local/llamasc"
    )
    assert default_home({"XDG_STATE_HOME": "/x/state"}, "linux") == Path("/x/state/llamasc")
    s = settings_from_sources(env={}, cli={"home": str(tmp_path)})
    assert s.resolved_state_file == tmp_path / "sidecars.json"
    assert s.resolved_log_dir == tmp_path / "logs"


TOML = """
max_sidecars = 3
model_map_file = "models.json"
[models.smol]
env = { GGML_X = "1" }
[models.extra]
path = "extra.gguf"
[flag_policy]
path_roots = { "--lora" = ["/srv/loras"] }
"""

YAML = """
max_sidecars: 3
model_map_file: models.json
models:
  smol: {env: {GGML_X: "1"}}
  extra: {path: extra.gguf}
flag_policy:
  path_roots: {"--lora": [/srv/loras]}
"""


@pytest.mark.parametrize(("suffix", "text"), [(".toml", TOML), (".yaml", YAML), (".yml", YAML)])
def test_config_files_toml_and_yaml(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"llamasc{suffix}"
    path.write_text(text)
    s = settings_from_sources(env={}, file_data=read_config_file(path))
    assert s.max_sidecars == 3
    assert s.model_map_file == tmp_path / "models.json"  # relative to the file
    assert s.models["extra"].path == tmp_path / "extra.gguf"
    assert s.models["smol"].env == {"GGML_X": "1"}
    assert s.flag_policy == {"path_roots": {"--lora": ["/srv/loras"]}}


@pytest.mark.parametrize(
    ("text", "fmt", "needle"),
    [
        ("max_sidecars = ", "toml", "invalid TOML"),
        ("a: [", "yaml", "invalid YAML"),
        ("- 1\n- 2", "yaml", "expected a table"),
        ("x = 1", "ini", "unknown config format"),
    ],
)
def test_config_syntax_errors(text: str, fmt: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_config_text(text, fmt=fmt, source="cfg")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "nope.toml")


def test_settings_are_frozen_and_strict() -> None:
    with pytest.raises(ValueError):
        Settings.model_validate({"nonsense": 1})
