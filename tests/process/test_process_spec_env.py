"""LaunchSpec, argv and the child's environment: pure logic, no processes."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamasc.errors import ConfigError
from llamasc.process import LaunchSpec, LlamaServer, build_argv, child_env, is_scrubbed
from llamasc.process import environment as envmod


def spec(**kw: object) -> LaunchSpec:
    base: dict[str, object] = {
        "binary": Path("bin/llama-server"),
        "model_path": Path("models/m.gguf"),
        "args": ("-c", "512"),
        "port": 8501,
    }
    base.update(kw)
    return LaunchSpec(**base)  # type: ignore[arg-type]


def test_argv_puts_owned_flags_last_as_separate_tokens() -> None:
    argv = build_argv(spec(args=["-c", "512", "--temp", "-0.5"], host="127.0.0.1"))
    assert argv == [
        str(Path("bin/llama-server")),
        "-c",
        "512",
        "--temp",
        "-0.5",
        "-m",
        str(Path("models/m.gguf")),
        "--host",
        "127.0.0.1",
        "--port",
        "8501",
    ]


def test_alias_names_the_model_so_clients_never_see_its_path() -> None:
    argv = build_argv(spec(alias="qwen3-coder"))
    assert argv[argv.index("--alias") + 1] == "qwen3-coder"
    assert "--alias" not in build_argv(spec())


@pytest.mark.parametrize("flag", ["-m", "--model", "--host", "--port", "-a", "--alias"])
def test_owned_flags_are_refused_in_args(flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        spec(args=("-c", "512", flag, "x"))


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_must_be_real(port: int) -> None:
    with pytest.raises(ConfigError, match="port"):
        spec(port=port)


@pytest.mark.anyio
async def test_port_0_is_not_chosen_yet_and_cannot_be_started() -> None:
    """0 is a spec a launcher still has to give a port (bench, ``llamasc.load``)."""
    unassigned = spec(port=0)
    with pytest.raises(ConfigError, match="no port chosen"):
        await LlamaServer.start(unassigned, ready_timeout=1)


@pytest.mark.parametrize("name", ["A-B", "1X", "X Y", ""])
def test_environment_names_are_checked(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid environment variable name"):
        spec(env={name: "1"})
    with pytest.raises(ConfigError, match="invalid environment variable name"):
        spec(keep_env=(name,))


def test_keep_env_lets_one_scrubbed_variable_through() -> None:
    base = {"LLAMA_ARG_THREADS": "3", "LLAMA_ARG_CTX_SIZE": "64", "PATH": "/bin"}
    env = child_env(spec(keep_env=("LLAMA_ARG_THREADS",)), base, config_home=Path("/x"))
    assert env["LLAMA_ARG_THREADS"] == "3"
    assert "LLAMA_ARG_CTX_SIZE" not in env


def test_spec_is_hashable_and_normalised() -> None:
    a = spec(args=["-c", "512"], env={"CUDA_VISIBLE_DEVICES": "0"}, binary="bin/llama-server")
    b = spec(args=("-c", "512"), env={"CUDA_VISIBLE_DEVICES": "0"})
    assert a == b
    assert hash(a) == hash(b)
    assert isinstance(a.args, tuple)
    assert isinstance(a.binary, Path)


@pytest.mark.parametrize(
    ("host", "url", "prefix"),
    [
        ("127.0.0.1", "http://127.0.0.1:8501", "[sidecar:k:8501] "),
        ("0.0.0.0", "http://127.0.0.1:8501", "[sidecar:k:8501] "),
        ("::1", "http://[::1]:8501", "[sidecar:k:8501] "),
        ("::", "http://[::1]:8501", "[sidecar:k:8501] "),
    ],
)
def test_base_url_and_prefix(host: str, url: str, prefix: str) -> None:
    s = spec(host=host, label="k")
    assert s.base_url == url
    assert s.prefix == prefix


STEERING = {
    "LLAMA_ARG_PORT": "9999",
    "LLAMA_ARG_MODEL": "/elsewhere.gguf",
    "LLAMA_ARG_N_GPU_LAYERS": "99",
    "LLAMA_API_KEY": "k",
    "HF_TOKEN": "t",
    "HF_ENDPOINT": "http://evil",
    "MODEL_ENDPOINT": "http://evil",
    "LLAMA_CACHE": "/tmp/c",
    "MTMD_BACKEND_DEVICE": "x",
    "AIP_MODE": "PREDICTION",
    "AIP_HTTP_PORT": "9999",
    "LLAMA_SERVER_ROUTER_PORT": "1",
    "LLAMA_SERVER_CHILD_MODE": "1",
    "LLAMA_SERVER_DEBUG_FAKE_TIMING": "1",
    "LLAMA_SERVER_SLOTS_DEBUG": "1",
    "LLAMA_APP_CMD": "x",
    "LLAMA_MEDIA_MARKER": "x",
    "LLAMA_TRACE": "1",
    "LLAMASC_API_KEY": "daemon-secret",
    "XDG_CONFIG_HOME": "/home/u/.config",
    "NO_COLOR": "0",
}
KEPT = {"PATH": "/usr/bin", "HOME": "/home/u", "CUDA_VISIBLE_DEVICES": "1", "LANG": "C.UTF-8"}


def test_child_env_scrubs_steering_variables(tmp_path: Path) -> None:
    env = child_env(spec(), {**STEERING, **KEPT}, config_home=tmp_path / "empty")
    assert {k: env[k] for k in KEPT} == KEPT
    leaked = set(STEERING) & set(env) - {"XDG_CONFIG_HOME", "NO_COLOR"}
    assert leaked == set()
    assert env["XDG_CONFIG_HOME"] == str(tmp_path / "empty")
    assert env["NO_COLOR"] == "1"


def test_spec_env_is_added_last_and_wins(tmp_path: Path) -> None:
    s = spec(env={"CUDA_VISIBLE_DEVICES": "0", "LLAMA_ARG_THREADS": "4"})
    env = child_env(
        s, {"CUDA_VISIBLE_DEVICES": "1", "LLAMA_ARG_THREADS": "8"}, config_home=tmp_path
    )
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env["LLAMA_ARG_THREADS"] == "4"  # the operator's own per-model choice


@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", min_size=1, max_size=20),
    st.sampled_from(["LLAMA_ARG_", "llama_arg_", "LLAMA_SERVER_", "AIP_", "Aip_"]),
)
def test_every_variable_of_a_scrubbed_family_is_scrubbed(suffix: str, prefix: str) -> None:
    assert is_scrubbed(prefix + suffix)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=20))
def test_unrelated_variables_are_kept(name: str) -> None:
    if name.startswith(("LLAMA", "AIP_", "HF_", "MODEL_END", "MTMD")):
        return
    assert not is_scrubbed(name)


def test_default_config_home_is_empty_and_under_llamasc_home(isolated_env: Path) -> None:
    env = child_env(spec(), {})
    home = Path(env["XDG_CONFIG_HOME"])
    assert home.is_dir()
    assert home.parent == isolated_env / "home"
    assert list(home.iterdir()) == []


def test_planted_config_in_our_dir_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    planted = tmp_path / "empty-config" / "llama.cpp" / "config.ini"
    planted.parent.mkdir(parents=True)
    planted.write_text("[*]\nport = 1\n")
    with caplog.at_level(logging.WARNING, logger="llamasc.process"):
        envmod.empty_config_home(tmp_path)
    assert str(planted) in caplog.text


@pytest.mark.skipif(sys.platform == "win32", reason="/etc exists only on POSIX")
def test_system_config_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ini = tmp_path / "config.ini"
    monkeypatch.setattr(envmod, "_warned_system_config", False)
    with caplog.at_level(logging.WARNING, logger="llamasc.process"):
        assert envmod.warn_system_config(ini) is False
        ini.write_text("[*]\n")
        assert envmod.warn_system_config(ini) is True
        assert envmod.warn_system_config(ini) is True
    assert caplog.text.count("cannot be turned off") == 1


@pytest.mark.parametrize(
    ("rc", "expected"),
    [
        (1, "exited with code 1"),
        (None, "is gone"),
        (-9, "was killed by SIGKILL"),
        (-4, "rebuild it with -DGGML_NATIVE=OFF"),
    ],
)
def test_exits_are_described_in_words(rc: int | None, expected: str) -> None:
    from llamasc.process.server import describe_exit

    assert expected in describe_exit(rc)
