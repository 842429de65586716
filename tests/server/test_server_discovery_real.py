"""Model discovery end to end: a daemon process over the real llama-server with the real
SmolLM2 and Gemma GGUFs in a models folder; a file added then SIGHUP, a file removed while a
request is in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fakes import free_port, free_port_range, http_ok, wait_until

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is POSIX"),
]

SMOL = "smollm2-135m-instruct:q4_1"
GEMMA = "gemma-3-270m-it:q4_k_m"


def _models(url: str) -> dict[str, Any]:
    return {m["id"]: m for m in httpx.get(url + "/v1/models", timeout=10).json()["data"]}


def _sidecars(url: str, model: str) -> list[dict[str, Any]]:
    data = httpx.get(url + "/sidecars", timeout=10).json()["sidecars"]
    return [s for s in data if s["model"] == model]


def _ask(url: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    return httpx.post(url + "/v1/chat/completions", json={**body, **extra}, timeout=120)


def test_add_a_file_sighup_request_it_then_remove_it_in_flight(
    tmp_path: Path,
    llama_server_bin: Path,
    smollm2_path: Path,
    gemma_path: Path,
    isolated_env: Path,
) -> None:
    models = tmp_path / "models"
    (models / "HuggingFaceTB").mkdir(parents=True)
    (models / "HuggingFaceTB" / smollm2_path.name).symlink_to(smollm2_path)
    gemma_link = models / "unsloth" / "gemma-3-270m-it-Q4_K_M.gguf"
    port, (lo, hi) = free_port(), free_port_range()
    env = {
        **os.environ,
        "LLAMA_SERVER_BIN": str(llama_server_bin),
        "LLAMASC_MODELS_DIR": str(models),
        "LLAMA_SIDECAR_BIND": f"127.0.0.1:{port}",
        "PORT_RANGE": f"{lo}-{hi}",
        "BASE_ARGS": '["-c", "32768", "-np", "1", "-t", "2"]',
        "HEALTH_TIMEOUT_SECONDS": "120",
        "LLAMASC_HOME": str(tmp_path / "home"),
        "LOG_LEVEL": "INFO",
    }
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "llamasc", "serve"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(url + "/health"), 60, "the daemon")
        listed = _models(url)
        assert list(listed) == [SMOL]
        assert listed[SMOL]["meta"]["context_length"] == 8192
        assert listed[SMOL]["meta"]["size_label"] == "135M"
        r = _ask(url, SMOL)
        assert r.status_code == 200, r.text
        (smol_sc,) = _sidecars(url, SMOL)
        flags = smol_sc["flags"]
        assert flags[flags.index("--ctx-size") + 1] == "8192"  # 32768 capped at its training

        gemma_link.parent.mkdir()
        gemma_link.symlink_to(gemma_path)
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: GEMMA in _models(url), 60, "SIGHUP to pick up Gemma")
        assert _models(url)[GEMMA]["meta"]["architecture"] == "gemma3"
        r = _ask(url, GEMMA)
        assert r.status_code == 200, r.text

        result: dict[str, Any] = {}

        def long_stream() -> None:
            body = {
                "model": GEMMA,
                "messages": [{"role": "user", "content": "Count from 1 to 200."}],
                "max_tokens": 200,
                "stream": True,
                "temperature": 0,
                "ignore_eos": True,
            }
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as resp:
                result["status"] = resp.status_code
                result["body"] = resp.read().decode()

        t = threading.Thread(target=long_stream)
        t.start()
        wait_until(lambda: any(s["in_flight"] for s in _sidecars(url, GEMMA)), 60, "the stream")
        gemma_link.unlink()
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: GEMMA not in _models(url), 60, "SIGHUP to drop Gemma")
        t.join(300)
        assert result["status"] == 200
        assert result["body"].rstrip().endswith("data: [DONE]")  # finished, not cut
        wait_until(lambda: not _sidecars(url, GEMMA), 60, "Gemma's sidecar to stop")
        r = _ask(url, GEMMA)
        assert r.status_code == 404
        assert _ask(url, SMOL).status_code == 200  # the other model is untouched
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
        log.close()
