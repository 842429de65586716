"""llamasc.load over our fake llama-server: fast checks of env, exits and start failures."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

import llamasc
from llamasc.errors import SidecarExitedError, SpawnError


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_env_reaches_the_scrubbed_child_and_flags_are_canonical(
    gguf: Path, fake_llama_server_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_ARG_CTX_SIZE", "99")  # an override the scrub must remove
    env = {"HIP_VISIBLE_DEVICES": "0"}
    with llamasc.load(gguf, flags="-c 512", binary=fake_llama_server_bin, env=env) as m:
        props = httpx.get(m.base_url + "/props", timeout=10).json()["fake"]
        assert props["env"].get("HIP_VISIBLE_DEVICES") == "0"
        assert "LLAMA_ARG_CTX_SIZE" not in props["env"]
        assert props["argv"][:2] == ["--ctx-size", "512"]
        assert "--alias" in props["argv"]
        assert "tiny" in props["argv"]
        assert m.chat("hi", max_tokens=3).finish_reason
        pid = m.pid
    assert pid is not None
    assert gone(pid)


def test_a_child_dying_mid_stream_raises_its_exit(gguf: Path, fake_llama_server_bin: Path) -> None:
    env = {"FAKE_LLAMA_CRASH_MID_STREAM": "1"}
    with llamasc.load(gguf, binary=fake_llama_server_bin, env=env) as m:
        stream = m.chat_stream("hi", max_tokens=50)
        with pytest.raises(SidecarExitedError) as err:
            stream.collect()
        assert err.value.returncode is not None
        assert "while serving a request" in str(err.value)
        assert m.error is err.value
        with pytest.raises(SidecarExitedError, match="before this request"):
            m.generate("again")


def test_a_child_failing_to_start_raises_spawn_error_with_its_lines(
    gguf: Path, fake_llama_server_bin: Path
) -> None:
    env = {"FAKE_LLAMA_CRASH_ON_START": "1"}
    with pytest.raises(SpawnError) as err:
        llamasc.load(gguf, binary=fake_llama_server_bin, env=env)
    assert err.value.returncode == 1
    assert err.value.stderr_tail


@pytest.mark.anyio
async def test_aload_awaited_then_closed(gguf: Path, fake_llama_server_bin: Path) -> None:
    m = await llamasc.aload(gguf, binary=fake_llama_server_bin)
    pieces = [p async for p in m.generate_stream("x", max_tokens=4)]
    assert len(pieces) == 4
    await m.aclose()
    assert m.pid is not None
    assert gone(m.pid)
