"""Issue 9's small ones: echoed values are cut, LLAMA_SERVER_BIN errors name their source,
and a client cannot ask for more context or slots than the operator's policy allows."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from server_fakes import DaemonFactory, chat

from llamasc.config.settings import settings_from_sources
from llamasc.errors import ConfigError, DiscoveryError
from llamasc.flags import validate_flags
from llamasc.server import Daemon
from llamasc.server.daemon import build_policy, policy_caps

DEADLINE = 30.0


def test_a_huge_unknown_model_id_comes_back_cut(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory()
    huge = "m" * 1_000_000
    r = httpx.post(d.url + "/v1/chat/completions", json=chat(huge), timeout=DEADLINE)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"
    assert len(r.content) < 2000
    assert "1000000 characters" in r.json()["error"]["message"]
    r = httpx.get(d.url + "/" + "p" * 50_000, timeout=DEADLINE)
    assert r.status_code == 404
    assert len(r.content) < 2000


def test_a_bad_llama_server_bin_names_the_environment_variable(tmp_path: Path) -> None:
    nope = tmp_path / "nope"
    settings = settings_from_sources(env={"LLAMA_SERVER_BIN": str(nope)})
    with pytest.raises(DiscoveryError) as err:
        Daemon(settings)
    assert str(err.value) == f"llama-server from LLAMA_SERVER_BIN is not an executable file: {nope}"
    settings = settings_from_sources(env={}, cli={"llama_server_bin": str(nope)})
    with pytest.raises(DiscoveryError, match="from --llama-server is not"):
        Daemon(settings)
    settings = settings_from_sources(
        env={}, file_data={"llama_server_bin": str(nope)}, file_name="llamasc.toml"
    )
    with pytest.raises(DiscoveryError, match=r"from llamasc\.toml: llama_server_bin is not"):
        Daemon(settings)


def test_default_caps_follow_the_base_context() -> None:
    assert policy_caps(["-c", "8192"]) == {"max_ctx_size": 8192, "max_parallel": 16}
    assert policy_caps(["--ctx-size=65536", "-np", "32"]) == {
        "max_ctx_size": 65536,
        "max_parallel": 32,
    }
    assert policy_caps([]) == {"max_ctx_size": 32768, "max_parallel": 16}
    assert policy_caps(["-c", "0"])["max_ctx_size"] == 32768


def test_a_client_cannot_ask_for_tens_of_gb_of_kv_cache() -> None:
    policy = build_policy(settings_from_sources(env={}), ["-c", "8192"])
    v = validate_flags("-c 1048576 -np 64", policy)
    assert not v.ok
    assert any("at most 8192" in p and "max_ctx_size" in p for p in v.problems)
    assert any("at most 16" in p and "max_parallel" in p for p in v.problems)
    assert not validate_flags("-c 0", policy).ok  # the model's whole context: not under a cap
    assert not validate_flags("--kv-unified-per-slot 4096 -np 4", policy).ok
    assert validate_flags("-c 8192 -np 4 --top-k 5", policy).ok
    wider = build_policy(
        settings_from_sources(env={}, file_data={"flag_policy": {"max_ctx_size": 131072}}),
        ["-c", "8192"],
    )
    assert validate_flags("-c 131072", wider).ok
    with pytest.raises(ConfigError, match="flag_policy"):
        build_policy(settings_from_sources(env={}, file_data={"flag_policy": {"max_parallel": 0}}))


def test_the_daemon_refuses_per_request_caches_over_its_policy(
    daemon_factory: DaemonFactory,
) -> None:
    d = daemon_factory()  # base args: -c 512
    url = d.url + "/v1/chat/completions"
    r = httpx.post(url, json=chat("m1"), headers={"x-agent-flags": "-c 1048576 -np 64"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_flags"
    assert "max_ctx_size" in r.json()["error"]["message"]
    assert d.sidecars() == []
    r = httpx.post(
        url, json=chat("m1"), headers={"x-agent-flags": "-c 256 -np 2"}, timeout=DEADLINE
    )
    assert r.status_code == 200, r.text
