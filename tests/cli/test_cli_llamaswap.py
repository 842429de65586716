"""A llama-swap user's commands: `llamasc config check config.yaml`, and `llamasc serve
--config config.yaml` reloading on SIGHUP with the real llama-server and GGUFs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from test_cli_serve import start_serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from server_fakes import free_port_range, wait_until

CHECKED = """
logToStdout: both
macros:
  server: /opt/llama.cpp/llama-server
  ctx: 4096
models:
  smol:
    cmd: |
      ${server} --port ${PORT}
      # -ngl 0
      -m /m/smol.gguf -c ${ctx} \\
      --top-k 20
    aliases: [small]
  vllm:
    cmd: vllm serve Qwen/Qwen3 --port ${PORT}
    cmdStop: docker stop ${MODEL_ID}
groups:
  g: {members: [smol]}
"""


def _check(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "llamasc", "config", "check", str(cfg), *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_config_check_prints_what_it_understood(tmp_path: Path) -> None:
    out = _check(tmp_path, CHECKED)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "smol [llama-server]  aliases: small" in out.stdout
    assert "cmd: /opt/llama.cpp/llama-server --port '${PORT}' -m /m/smol.gguf -c 4096" in out.stdout
    assert "operator args: -c 4096 --top-k 20" in out.stdout
    assert "vllm [opaque]" in out.stdout
    assert "cmdStop: docker stop vllm" in out.stdout  # ${MODEL_ID} is known already
    assert "group g: smol" in out.stdout
    assert "warning: logToStdout: not acted on" in out.stdout
    assert "not served" not in out.stdout  # vllm runs as an opaque upstream
    assert "ok, " in out.stdout
    assert "Traceback" not in out.stderr


def test_config_check_lists_every_error_and_exits_2(tmp_path: Path) -> None:
    broken = CHECKED.replace("${ctx}", "${context}") + "hooks:\n  on_startup:\n    preload: [x]\n"
    out = _check(tmp_path, broken)
    assert out.returncode == 2
    assert "error: models -> smol -> cmd: unknown macro ${context}" in out.stdout
    assert "error: hooks -> on_startup -> preload: unknown model 'x'" in out.stdout
    assert "2 error(s)" in out.stdout
    assert "Traceback" not in out.stderr


def test_config_check_of_an_unset_env_var_is_one_line(tmp_path: Path) -> None:
    out = _check(tmp_path, "apiKeys: ['${env.LLAMASC_TEST_UNSET_VAR}']\n" + CHECKED)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "apiKeys: environment variable 'LLAMASC_TEST_UNSET_VAR' is not set" in lines[0]


REAL = """
healthCheckTimeout: 60
models:
  smol:
    cmd: ${env.LLAMA_BIN} --port ${PORT} -m ${env.SMOL} -c 4096 -np 1 -t 1 --top-k 1
  gemma:
    cmd: ${env.LLAMA_BIN} --port ${PORT} -m ${env.GEMMA} -c 512 -np 1 -t 1
"""


def _sidecars(url: str) -> dict[str, dict[str, Any]]:
    data = httpx.get(url + "/sidecars", timeout=10).json()["sidecars"]
    return {s["model"]: s for s in data if s["state"] == "ready"}


def _sighup_and_wait_for_reload(served: Any, url: str) -> dict[str, Any]:
    """Send SIGHUP and return the ``config_reloaded`` event of ``/api/events``.

    A reload is asynchronous to the signal: a request sent before it is applied is served by
    the old configuration (and the old child, whose one slot is busy streaming).
    """
    got: dict[str, Any] = {}
    subscribed = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", url + "/api/events", timeout=httpx.Timeout(60)) as r:
            for line in r.iter_lines():
                if line.startswith("event: state"):
                    subscribed.set()
                elif line.startswith("event: config_reload"):
                    got["type"] = line.split(": ", 1)[1]
                elif line.startswith("data: ") and "type" in got:
                    got.update(json.loads(line[6:]))
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert subscribed.wait(30), "no state event on /api/events"
    served.proc.send_signal(signal.SIGHUP)
    t.join(60)
    assert got.get("type") == "config_reloaded", got
    return got


@pytest.mark.real
@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is POSIX")
def test_sighup_reload_changes_one_model_and_keeps_the_other_while_in_flight(
    tmp_path: Path, llama_server_bin: Path, smollm2_path: Path, gemma_path: Path
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(REAL)
    lo, hi = free_port_range()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA", "MAX_", "PORT_"))}
    env.update(
        LLAMA_BIN=str(llama_server_bin),
        LLAMA_SERVER_BIN=str(llama_server_bin),
        SMOL=str(smollm2_path),
        GEMMA=str(gemma_path),
        LLAMA_SIDECAR_BIND="127.0.0.1:0",
        PORT_RANGE=f"{lo}-{hi}",
        BASE_ARGS="[]",
        MAX_SIDECARS="3",  # the old and the new smol child, and gemma, for a moment
        LLAMASC_HOME=str(tmp_path / "home"),
    )
    served = start_serve(env, "--config", str(cfg))
    try:
        url = served.url
        for model in ("smol", "gemma"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            r = httpx.post(
                url + "/v1/chat/completions", json={**body, "max_tokens": 2}, timeout=120
            )
            assert r.status_code == 200, r.text
        before = _sidecars(url)
        streamed: dict[str, Any] = {}

        def long_stream() -> None:
            body = {
                "model": "smol",
                "messages": [{"role": "user", "content": "Tell a long story."}],
                # long enough to outlast the reload, a projection and the new child's start
                "max_tokens": 2400,
                "ignore_eos": True,
                "stream": True,
            }
            r = httpx.post(url + "/v1/chat/completions", json=body, timeout=300)
            streamed["status"], streamed["text"] = r.status_code, r.text

        t = threading.Thread(target=long_stream)
        t.start()
        wait_until(lambda: _sidecars(url)["smol"]["in_flight"] == 1, 30, "the stream in flight")
        cfg.write_text(REAL.replace("--top-k 1", "--top-k 2"))
        reloaded = _sighup_and_wait_for_reload(served, url)
        assert (reloaded["changed"], reloaded["kept"]) == (["smol"], ["gemma"])
        # the changed model gets a new child at once, beside the old one still streaming
        body = {"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        r = httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        assert t.is_alive(), "the long stream ended before the reload was tested"
        t.join(300)
        assert streamed["status"] == 200
        assert streamed["text"].rstrip().endswith("data: [DONE]")
        old_smol = before["smol"]["pid"]
        wait_until(
            lambda: (
                not psutil.pid_exists(old_smol)
                or psutil.Process(old_smol).status() == psutil.STATUS_ZOMBIE
            ),
            60,
            "the old smol child to stop after its request",
        )
        after = _sidecars(url)
        assert after["gemma"]["pid"] == before["gemma"]["pid"]
        assert after["smol"]["pid"] != old_smol
        assert after["smol"]["flags"][after["smol"]["flags"].index("--top-k") + 1] == "2"
        assert served.proc.poll() is None  # SIGHUP did not stop the daemon
    finally:
        served.proc.send_signal(signal.SIGINT)
        try:
            served.proc.wait(60)
        finally:
            served.finish()
