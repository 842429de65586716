"""Parsing llama-swap configs: macros, env macros, multi-line cmd, aliases, groups, Windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamasc.bench.llamaswap import (
    expand_cmd,
    join_continuations,
    parse_llama_swap,
    split_command,
    strip_comment_lines,
)
from llamasc.errors import ConfigError

DATA = Path(__file__).parent / "data"
ENV = {"MODEL_ROOT": "/srv/models", "GRAPHS": "1", "OPENROUTER_KEY_UNSET_OK": "k"}


@pytest.fixture
def linux_config() -> str:
    return (DATA / "llama-swap-linux.yaml").read_text()


def test_realistic_config_yields_the_benchable_models(linux_config: str) -> None:
    cfg = parse_llama_swap(linux_config, source="cfg.yaml", environ=ENV)
    assert sorted(cfg.models) == ["gemma-4-31b", "glm-4.5-air", "qwen3.6-27b"]
    assert sorted(cfg.problems) == ["embedder", "mistral-typo", "vision"]
    assert "not llama-server" in cfg.problems["embedder"]
    assert "unknown macro ${ngl}" in cfg.problems["mistral-typo"]
    assert "no -m/--model" in cfg.problems["vision"]


def test_macros_nest_and_production_flags_keep_their_order(linux_config: str) -> None:
    qwen = parse_llama_swap(linux_config, environ=ENV).models["qwen3.6-27b"]
    assert qwen.binary == "/opt/llama.cpp/build/bin/llama-server"
    assert qwen.path == "/srv/models/Qwen3.6-27B-Q4_K_M.gguf"
    assert list(qwen.flags) == [
        "--jinja",
        "-fa",
        "on",
        "-ngl",
        "99",
        "-ctk",
        "q8_0",
        "-ctv",
        "q8_0",
        "--temp",
        "0.6",
        "--top-k",
        "20",
        "--top-p",
        "0.95",
        "--alias",
        "qwen3.6-27b",
    ]
    # the bench owns where it listens, the context, the slots and speculative decoding
    assert list(qwen.dropped) == [
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--ctx-size",
        "65536",
        "--spec-type",
        "draft-mtp",
        "--spec-draft-n-max",
        "2",
        "--parallel",
        "4",
    ]
    assert dict(qwen.env) == {"CUDA_VISIBLE_DEVICES": "0", "GGML_CUDA_GRAPHS": "1"}


def test_model_macros_override_globals_and_quoted_paths_keep_spaces(linux_config: str) -> None:
    gemma = parse_llama_swap(linux_config, environ=ENV).models["gemma-4-31b"]
    assert gemma.path == "/srv/models/gemma 4/gemma-4-31B-it-Q4_K_M.gguf"
    assert list(gemma.flags) == ["-ngl", "99"]
    # legacy --draft-max, the draft model and the API key are the bench's business
    assert list(gemma.dropped) == [
        "--port",
        "0",
        "-c",
        "32768",
        "--draft-max",
        "8",
        "-md",
        "/srv/models/gemma-4-draft.gguf",
        "--api-key",
        "sk-local-123",
    ]


def test_multiline_cmd_with_backslashes_and_comment_lines(linux_config: str) -> None:
    glm = parse_llama_swap(linux_config, environ=ENV).models["glm-4.5-air"]
    assert glm.path == "/srv/models/GLM-4.5-Air-Q4_K_M-00001-of-00002.gguf"
    assert list(glm.flags) == [
        "--n-cpu-moe",
        "24",
        "--override-tensor",
        "blk\\.(1[0-9])\\.ffn_.*=CPU",
    ]


def test_aliases_select_models_and_unbenchable_ones_error_only_when_chosen(
    linux_config: str,
) -> None:
    cfg = parse_llama_swap(linux_config, environ=ENV)
    assert [m.id for m in cfg.select(["qwen", "glm-4.5-air", "qwen-27b"])] == [
        "qwen3.6-27b",
        "glm-4.5-air",
    ]
    with pytest.raises(ConfigError, match="not llama-server"):
        cfg.select(["embedder"])
    with pytest.raises(ConfigError, match="no model 'nope'"):
        cfg.select(["nope"])
    assert [m.id for m in cfg.select()] == ["gemma-4-31b", "glm-4.5-air", "qwen3.6-27b"]


def test_missing_env_var_is_a_load_error_naming_where_it_is_used(linux_config: str) -> None:
    # llama-swap's rule: an unset ${env.NAME} stops the load
    with pytest.raises(ConfigError, match="macros -> models: environment variable 'MODEL_ROOT'"):
        parse_llama_swap(linux_config, environ={"GRAPHS": "1"})


def test_a_config_of_unbenchable_models_says_so_when_all_are_wanted() -> None:
    cfg = parse_llama_swap("models:\n  e: {cmd: docker run x}\n")
    with pytest.raises(ConfigError, match="no model can be benched"):
        cfg.select()


def test_windows_host_configs_split_by_windows_rules() -> None:
    text = r"""
macros:
  bin: C:\llama.cpp\llama-server.exe
models:
  qwen:
    cmd: >
      ${bin} --port ${PORT} -m "D:\My Models\qwen.gguf" -ngl 99
      --chat-template-kwargs "{\"enable_thinking\":false}"
"""
    model = parse_llama_swap(text, windows=True).models["qwen"]
    assert model.binary == r"C:\llama.cpp\llama-server.exe"
    assert model.path == r"D:\My Models\qwen.gguf"
    assert list(model.flags) == [
        "-ngl",
        "99",
        "--chat-template-kwargs",
        '{"enable_thinking":false}',
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [a, b]", "no 'models:' mapping"),
        ("just text", "top level must be a mapping"),
        ("models:\n  a: {cmd: x\n", "not valid YAML"),
        ("macros: {PORT: 1}\nmodels: {}", "reserved"),
        ("macros: {'bad name': 1}\nmodels: {}", "invalid macro name"),
    ],
)
def test_broken_configs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_llama_swap(text, source="c.yaml")


def test_macro_values_print_like_go() -> None:
    text = expand_cmd("m", "x ${a} ${b} ${c}", [("a", True), ("b", 0.5), ("c", 7)], {})
    assert text == "x true 0.5 7"


def test_later_macros_may_use_earlier_ones_but_not_the_reverse() -> None:
    assert expand_cmd("m", "${b}", [("a", "A"), ("b", "${a}-B")], {}) == "A-B"
    with pytest.raises(ConfigError, match="unknown macro"):
        expand_cmd("m", "${a}", [("a", "${b}"), ("b", "B")], {})


def test_comment_and_continuation_rules_match_llama_swap() -> None:
    assert strip_comment_lines("a\n  # c\nb # not a comment line") == "a\nb # not a comment line"
    # a trailing backslash becomes a space; the line break stays whitespace for the split
    assert join_continuations("a \\\n  b\\\nc") == "a  \nb \nc"
    assert split_command(join_continuations("x \\\n  -m 'a b'\\\n-c 1"), windows=False) == [
        "x",
        "-m",
        "a b",
        "-c",
        "1",
    ]
