"""The llama-swap reader: every key of its schema, every macro rule, every user mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamasc.config.llamaswap import is_llama_swap, parse_text, read_sources
from llamasc.config.llamaswap.native import to_native
from llamasc.config.settings import load_settings, settings_from_sources
from llamasc.errors import ConfigError

DATA = Path(__file__).parent / "data"
FULL = DATA / "llama-swap-full.yaml"
ENV = {"SECOND_KEY": "sk-two"}


def full():
    return parse_text(FULL.read_text(), source="full.yaml", environ=ENV, windows=False)


def test_every_key_of_the_schema_is_understood() -> None:
    cfg = full()
    assert cfg.errors == []
    smol, gemma, whisper = cfg.models["smol"], cfg.models["gemma"], cfg.models["whisper"]
    assert smol.kind == gemma.kind == "llama-server"
    assert whisper.kind == "opaque"
    assert smol.gguf == "models/smol.gguf"
    assert smol.args == ("-c", "4096", "--top-k", "20")
    assert gemma.args == ("-c", "8192")  # the model's macro overrides the global one
    assert gemma.dropped == ("--port", "${PORT}", "--api-key", "secret")
    assert smol.name == "SmolLM2 4096"
    assert smol.description == "tiny model for smol"
    # a whole-value macro keeps its type; inside a string it is printed
    assert smol.metadata == {"family": "smol", "context": 4096, "tags": ["smol", "ctx-4096"]}
    assert smol.filters.strip_params == ("top_p",)  # "model" is protected
    assert smol.filters.set_params == {"temperature": 0.1}
    assert smol.filters.set_params_by_id == {"smol:creative": {"temperature": 1.2}}
    assert cfg.aliases == {"small": "smol", "tiny": "smol", "smol:creative": "smol"}
    assert (smol.ttl, smol.concurrency_limit, dict(smol.env)) == (
        30.0,
        3,
        {"CUDA_VISIBLE_DEVICES": "0"},
    )
    assert gemma.unlisted
    assert gemma.use_model_name == "google/gemma-3-270m"
    assert gemma.send_loading_state is False
    assert gemma.priority == 5
    assert gemma.timeouts == {"connect": 5.0}
    assert gemma.capabilities == {"tools": True}
    assert whisper.cmd_stop == ("kill", "-INT", "${PID}")
    assert whisper.check_endpoint == "none"
    assert whisper.unload_timeout == 3.0
    assert whisper.proxy == "http://127.0.0.1:${PORT}"
    assert whisper.uses_port
    assert cfg.api_keys == ("sk-one", "sk-two")
    assert cfg.preload == ("smol",)  # an alias in preload names its model
    assert cfg.groups["audio"].persistent
    assert not cfg.groups["audio"].swap
    assert cfg.groups["chat"].members == ("smol", "gemma")
    assert cfg.peers["gpu-box"].proxy == "http://10.0.0.2:8080"
    assert cfg.peers["gpu-box"].timeouts == {"connect": 2.0}
    assert (cfg.health_check_timeout, cfg.global_ttl, cfg.start_port) == (90.0, 600.0, 9100)
    assert cfg.send_loading_state
    assert cfg.include_aliases_in_list


def test_keys_not_acted_on_are_warned_about_one_by_one() -> None:
    warnings = "\n".join(full().warnings)
    for key in ("logTimeFormat", "logToStdout", "metricsMaxInMemory", "captureBuffer",
                "performance", "ui", "profiles", "models -> gemma -> compat"):  # fmt: skip
        assert key in warnings
    assert "healthCheckTimeout" not in warnings
    assert "peers" not in warnings


def test_a_models_timeouts_are_warned_about_not_dropped_silently(tmp_path: Path) -> None:
    _, warnings = to_native(full(), base=tmp_path)
    (line,) = [w for w in warnings if "models -> gemma -> timeouts" in w]
    assert line.startswith("models -> gemma -> timeouts -> connect: not acted on")


def test_native_settings_carry_the_scheduling_and_listing_keys(tmp_path: Path) -> None:
    data, warnings = to_native(full(), base=tmp_path)
    smol = data["models"]["smol"]
    assert smol["path"] == str(tmp_path / "models/smol.gguf")
    assert smol["args"] == ["-c", "4096", "--top-k", "20"]
    assert (smol["ttl"], smol["concurrency"], smol["send_loading_state"]) == (30.0, 3, True)
    assert data["models"]["gemma"]["ttl"] == 600.0  # ttl -1 (unset) -> globalTTL
    assert data["models"]["gemma"]["priority"] == 5
    whisper = data["models"]["whisper"]  # another program: an opaque upstream
    assert "path" not in whisper
    assert "args" not in whisper
    assert whisper["opaque"]["cmd_stop"] == ["kill", "-INT", "${PID}"]
    assert whisper["opaque"]["check_endpoint"] == "none"
    assert whisper["opaque"]["unload_timeout"] == 3.0
    assert whisper["opaque"]["proxy"] == "http://127.0.0.1:${PORT}"
    assert "--port" in whisper["opaque"]["argv"]
    assert not any("not served" in w for w in warnings)
    assert data["peers"]["gpu-box"]["proxy"] == "http://10.0.0.2:8080"
    assert data["peers"]["gpu-box"]["connect_timeout"] == 2.0
    assert data["peers"]["gpu-box"]["api_key"] == "peer-key"
    assert data["groups"]["chat"] == {
        "members": ["smol", "gemma"],
        "swap": True,
        "exclusive": True,
        "persistent": False,
    }
    assert data["groups"]["audio"]["members"] == ["whisper"]
    assert data["preload"] == ["smol"]
    assert data["port_range"] == (9100, 9199)
    assert data["log_level"] == "WARNING"
    assert data["health_timeout"] == 90.0
    settings = settings_from_sources(cli={}, env={}, file_data=data)
    assert settings.api_keys == ("sk-one", "sk-two")
    assert settings.models["smol"].aliases == ("small", "tiny")
    assert settings.models["smol"].filters.set_params == {"temperature": 0.1}


def _one_error(text: str, environ: dict[str, str] | None = None) -> str:
    cfg = parse_text(text, environ=environ or {}, windows=False)
    assert len(cfg.errors) == 1, cfg.errors
    assert "\n" not in cfg.errors[0]
    return cfg.errors[0]


M = "models:\n  a:\n    cmd: llama-server -m /a.gguf --port ${PORT}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "models:\n  a:\n    cmd: llama-server -m ${nope}\n",
            "models -> a -> cmd: unknown macro ${nope}",
        ),
        ("macros:\n  x: ${y}\n  y: 1\n" + M, "macros -> x: uses ${y}, which is defined after it"),
        ("macros:\n  x: a${x}\n" + M, "macros -> x: macro uses itself"),
        ("macros:\n  PORT: 1\n" + M, "macros -> PORT: macro name 'PORT' is reserved"),
        ("macros:\n  'a b': 1\n" + M, "macros -> a b: invalid macro name"),
        (
            "models:\n  a:\n    cmd: llama-server -m /a.gguf --port 8080\n    proxy: http://h:${PORT}\n",
            "models -> a -> proxy: uses ${PORT} but cmd does not",
        ),
        (
            "models:\n  a:\n    cmd: llama-server -m /a.gguf --port 8080\n",
            "models -> a -> proxy (default http://localhost:${PORT}): uses ${PORT}",
        ),
        (
            M
            + "    aliases: [x]\n  b:\n    cmd: llama-server -m /b.gguf --port ${PORT}\n"
            + "    aliases: [x]\n",
            "models -> b -> aliases: alias 'x' is also an alias of 'a'",
        ),
        (M + "    aliases: [a]\n", "models -> a -> aliases: 'a' is a model id"),
        (
            M + "groups:\n  g:\n    members: [a, ghost]\n",
            "groups -> g -> members: unknown model 'ghost'",
        ),
        (M + "hooks:\n  on_startup:\n    preload: [ghost]\n", "preload: unknown model 'ghost'"),
        (M + "    ttl: soon\n", "models -> a -> ttl: must be a number"),
        (M + "    env: [NOEQUALS]\n", "models -> a -> env: entry 'NOEQUALS' is not KEY=value"),
        (
            "models:\n  a:\n    cmd: llama-server --port ${PORT}\n",
            "models -> a -> cmd: llama-server with no -m",
        ),
        ("models:\n  a:\n    name: x\n", "models -> a -> cmd: is missing"),
        (
            M + "peers:\n  p:\n    proxy: ftp://x\n    models: [m]\n",
            "peers -> p -> proxy: must be an http",
        ),
        ("models: [a]\n", "no 'models:' mapping"),
        (
            M + "    cmd_typo: 1\n    timeouts: {connekt: 1}\n",
            "models -> a -> timeouts -> connekt: unknown timeout",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_model_and_key(text: str, expected: str) -> None:
    assert expected in _one_error(text)


def test_an_unset_env_var_is_a_load_error_naming_the_key() -> None:
    text = M.replace("/a.gguf", "${env.MODELS}/a.gguf")
    with pytest.raises(ConfigError, match=r"models -> a -> cmd: environment variable 'MODELS'"):
        parse_text(text, environ={})
    assert parse_text(text, environ={"MODELS": "/srv"}).models["a"].gguf == "/srv/a.gguf"


def test_a_commented_out_env_macro_needs_no_variable() -> None:
    cfg = parse_text("# apiKeys: [${env.NOT_SET}]\n" + M, environ={})
    assert cfg.errors == []
    assert "a" in cfg.models


def test_flow_style_env_macros_parse_once_substituted() -> None:
    cfg = parse_text("apiKeys: [${env.KEY}]\n" + M, environ={"KEY": "k1"})
    assert cfg.api_keys == ("k1",)


def test_later_macros_use_earlier_ones_and_models_override_in_place() -> None:
    text = (
        "macros:\n  a: A\n  b: ${a}-B\n"
        "models:\n  m:\n    macros: {a: Z}\n"
        "    cmd: llama-server -m /${b}.gguf --port ${PORT}\n"
    )
    assert parse_text(text).models["m"].gguf == "/Z-B.gguf"


def test_multiline_cmd_comments_backslashes_and_quotes_never_reach_a_shell() -> None:
    text = (
        "models:\n  m:\n    cmd: |\n"
        "      llama-server \\\n"
        "        # -ngl 0\n"
        "        -m '/my models/m.gguf' \\\n"
        "        --port ${PORT} --chat-template-kwargs '{\"a\": 1}' ; rm -rf /\n"
    )
    m = parse_text(text).models["m"]
    assert m.gguf == "/my models/m.gguf"
    assert m.args == ("--chat-template-kwargs", '{"a": 1}', ";", "rm", "-rf", "/")


def test_pid_is_only_for_cmd_stop() -> None:
    assert "${PID} is only for cmdStop" in _one_error(
        "models:\n  a:\n    cmd: x --port ${PORT} --pid ${PID}\n"
    )


def test_config_dir_fragments_merge_and_duplicates_are_errors(tmp_path: Path) -> None:
    main = tmp_path / "config.yaml"
    main.write_text("apiKeys: [one]\n" + M)
    frag = tmp_path / "d"
    frag.mkdir()
    (frag / "10-b.yaml").write_text(
        "apiKeys: [two]\nmodels:\n  b:\n    cmd: llama-server -m /b.gguf --port ${PORT}\n"
    )
    (frag / "20-macros.yml").write_text("macros: {x: 1}\n")
    (frag / "ignored.txt").write_text("models: {zzz: {}}\n")
    doc, names = read_sources(main, frag, {})
    assert sorted(doc["models"]) == ["a", "b"]
    assert doc["apiKeys"] == ["one", "two"]
    assert [Path(n).name for n in names] == ["config.yaml", "10-b.yaml", "20-macros.yml"]
    (frag / "30-dup.yaml").write_text("models:\n  a:\n    cmd: y\n")
    with pytest.raises(ConfigError, match=r"models -> a: already defined"):
        read_sources(main, frag, {})
    (frag / "30-dup.yaml").write_text("logLevel: debug\n")
    (frag / "40-dup.yaml").write_text("logLevel: info\n")
    with pytest.raises(ConfigError, match="logLevel: conflicts"):
        read_sources(main, frag, {})


def test_llama_swap_configs_are_recognised_and_native_ones_are_not() -> None:
    assert is_llama_swap({"models": {"a": {"cmd": "x"}}})
    assert is_llama_swap({"healthCheckTimeout": 60})
    assert not is_llama_swap({"max_sidecars": 2, "models": {"a": {"path": "x.gguf"}}})


def test_load_settings_reads_a_llama_swap_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(FULL.read_text())
    settings = load_settings({}, env=ENV, config_path=cfg)
    assert sorted(settings.models) == ["gemma", "smol", "whisper"]
    assert settings.models["smol"].args == ("-c", "4096", "--top-k", "20")
    whisper = settings.models["whisper"].opaque
    assert whisper is not None
    assert whisper.cmd_stop == ("kill", "-INT", "${PID}")
    assert settings.health_timeout == 90.0
    assert settings.ttl == 600.0
    assert any("logTimeFormat" in w for w in settings.swap_warnings)


def test_a_broken_llama_swap_file_stops_start_up_with_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(M + "    ttl: soon\ngroups:\n  g: {members: [ghost]}\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, env={}, config_path=cfg)
    assert "models -> a -> ttl: must be a number" in info.value.message
    assert "(and 1 more)" in info.value.message
    assert any("ghost" in d for d in info.value.details)
