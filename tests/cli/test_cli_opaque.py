"""Opaque upstreams: a llama-swap model whose cmd is not llama-server, served by a real
``llamasc serve --config`` (tests/fakes/opaque_backend.py plays vLLM)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from test_cli_serve import Served, start_serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from server_fakes import free_port_range, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and cmdStop")

BACKEND = Path(__file__).resolve().parent.parent / "fakes" / "opaque_backend.py"

CONFIG = """
healthCheckTimeout: 20
models:
  slow:
    cmd: ${env.PY} ${env.BACKEND} serve --port ${PORT} --ready-after 1.5 --marker ${env.MARK}
    checkEndpoint: /ready
    cmdStop: ${env.PY} ${env.BACKEND} stop --pid ${PID} --model ${MODEL_ID} --marker ${env.MARK}
  stubborn:
    cmd: ${env.PY} ${env.BACKEND} serve --port ${PORT} --ignore-term --marker ${env.MARK}
    unloadTimeout: 1
  nocheck:
    cmd: ${env.PY} ${env.BACKEND} serve --port ${PORT}
    checkEndpoint: none
    aliases: [nc]
"""


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    lo, hi = free_port_range()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA", "MAX_", "PORT_"))}
    env.update(
        PY=sys.executable,
        BACKEND=str(BACKEND),
        MARK=str(tmp_path / "marker"),
        LLAMA_SIDECAR_BIND="127.0.0.1:0",
        PORT_RANGE=f"{lo}-{hi}",
        MAX_SIDECARS="3",
        LLAMASC_HOME=str(tmp_path / "home"),
        **more,
    )
    return env


def _serve(tmp_path: Path, text: str, **env: str) -> Served:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    return start_serve(_env(tmp_path, **env), "--config", str(cfg))


def _chat(url: str, model: str, **headers: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60)


def _sidecars(url: str) -> dict[str, dict[str, Any]]:
    data = httpx.get(url + "/sidecars", timeout=10).json()["sidecars"]
    return {s["model"]: s for s in data}


def _marks(tmp_path: Path) -> list[str]:
    p = tmp_path / "marker"
    return p.read_text().split("\n")[:-1] if p.exists() else []


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_served_ready_by_check_endpoint_and_stopped_by_cmd_stop(tmp_path: Path) -> None:
    served = _serve(tmp_path, CONFIG)
    try:
        r = _chat(served.url, "slow")  # waits for /ready (503 for 1.5 s), not for /health
        assert r.status_code == 200, r.text
        reply = r.json()
        port = _sidecars(served.url)["slow"]["port"]
        assert reply["choices"][0]["message"]["content"] == f"opaque on port {port}"
        assert "x-agent-flags" not in reply["seen_headers"]
        pid = reply["pid"]
        # checkEndpoint: none is ready once spawned (as in llama-swap, a request sent before
        # the program listens gets a 502); by its alias
        wait_until(lambda: _chat(served.url, "nc").status_code == 200, 30, "nocheck to answer")
        # flags for a model that is not llama-server: 400 invalid_flags, explained
        r = _chat(served.url, "slow", **{"X-Agent-Flags": "--temp 0.5"})
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == "invalid_flags"
        assert "takes no X-Agent-Flags" in err["message"]
        listed = httpx.get(served.url + "/v1/models", timeout=10).json()["data"]
        status = {m["id"]: m.get("status") for m in listed}
        assert set(status) == {"slow", "stubborn", "nocheck"}
        assert status["slow"] == {"value": "loaded", "args": []}
        assert status["stubborn"] == {"value": "unloaded", "args": []}  # no BASE_ARGS: not ours
        running = httpx.get(served.url + "/running", timeout=10).json()
        assert {m["model"] for m in running["running"]} == {"slow", "nocheck"}
        slow = next(m for m in running["running"] if m["model"] == "slow")
        assert "opaque_backend.py" in slow["cmd"]  # its own cmd, ${PORT} filled
        assert "${PORT}" not in slow["cmd"]
        words = slow["cmd"].split()
        port = words[words.index("--port") + 1]
        assert slow["proxy"] == f"http://localhost:{port}"  # the model's proxy, filled
        r = httpx.post(served.url + "/api/models/unload/slow", timeout=60)
        assert r.status_code == 200, r.text
        wait_until(lambda: _gone(pid), 30, "the backend to stop")
        assert _marks(tmp_path) == [f"cmdstop {pid} slow", f"term {pid}"]
    finally:
        served.proc.send_signal(signal.SIGINT)
        served.proc.wait(60)
        served.finish()


def test_sigterm_then_sigkill_after_unload_timeout(tmp_path: Path) -> None:
    served = _serve(tmp_path, CONFIG)
    try:
        r = _chat(served.url, "stubborn")
        assert r.status_code == 200, r.text
        pid = r.json()["pid"]
        r = httpx.post(served.url + "/api/models/unload/stubborn", timeout=60)
        assert r.status_code == 200, r.text
        assert _gone(pid)  # the unload answers once the child is reaped
        assert _marks(tmp_path) == [f"term {pid}"]  # it ignored SIGTERM: killed after 1 s
    finally:
        served.proc.send_signal(signal.SIGINT)
        served.proc.wait(60)
        served.finish()


def test_killed_with_the_daemon(tmp_path: Path) -> None:
    served = _serve(tmp_path, CONFIG)
    try:
        r = _chat(served.url, "stubborn")  # ignores SIGTERM: only the kill-on-exit gets it
        assert r.status_code == 200, r.text
        pid = r.json()["pid"]
        served.proc.kill()  # no clean-up by the daemon at all
        served.proc.wait(30)
        wait_until(lambda: _gone(pid), 30, "the orphaned backend to die")
    finally:
        served.finish()


SWAP_GROUP = """
models:
  opaque:
    cmd: ${env.PY} ${env.BACKEND} serve --port ${PORT} --marker ${env.MARK}
  smol:
    cmd: ${env.LLAMA_BIN} --port ${PORT} -m ${env.SMOL} -c 512 -np 1 -t 1
groups:
  one-at-a-time:
    members: [opaque, smol]
"""


@pytest.mark.real
def test_swapped_with_a_llama_server_model_in_a_group(
    tmp_path: Path, llama_server_bin: Path, smollm2_path: Path
) -> None:
    served = _serve(
        tmp_path, SWAP_GROUP, LLAMA_BIN=str(llama_server_bin), SMOL=str(smollm2_path),
        LLAMA_SERVER_BIN=str(llama_server_bin), BASE_ARGS="[]",
    )  # fmt: skip
    try:
        r = _chat(served.url, "opaque")
        assert r.status_code == 200, r.text
        pid = r.json()["pid"]
        body = {"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        r = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        assert _gone(pid)
        assert _marks(tmp_path) == [f"term {pid}"]
        assert set(_sidecars(served.url)) == {"smol"}
        r = _chat(served.url, "opaque")  # and back: smol goes
        assert r.status_code == 200, r.text
        wait_until(lambda: set(_sidecars(served.url)) == {"opaque"}, 30, "smol to go")
    finally:
        served.proc.send_signal(signal.SIGINT)
        served.proc.wait(60)
        served.finish()


def _read_until(lines: Any, needle: str) -> list[str]:
    got: list[str] = []
    for line in lines:
        got.append(line)
        if needle in line:
            return got
    raise AssertionError(f"stream ended before {needle!r}: {got[-5:]}")


def test_logs_stream_follows_the_daemon_and_one_models_output(tmp_path: Path) -> None:
    served = _serve(tmp_path, CONFIG)
    url = served.url
    try:
        r = httpx.get(url + "/logs/stream/ghost", timeout=10)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "model_not_found"
        wait_until(lambda: _chat(url, "nocheck").status_code == 200, 30, "nocheck to answer")
        timeout = httpx.Timeout(30)
        with httpx.stream("GET", url + "/logs/stream/nc", timeout=timeout) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            lines = r.iter_lines()
            history = _read_until(lines, "opaque backend listening on")  # its history
            assert not any("llamasc." in ln for ln in history)  # its output only
            _chat(url, "nocheck")
            _read_until(lines, "POST /v1/chat/completions")  # followed
        with httpx.stream("GET", url + "/logs/stream?no-history", timeout=timeout) as r:
            lines = r.iter_lines()
            assert _chat(url, "slow").status_code == 200  # a start: daemon and output lines
            got = _read_until(lines, "[slow] opaque backend listening on")
            assert not any("[nocheck] opaque backend listening" in ln for ln in got)
            assert any("llamasc.pool.sidecars: starting" in ln and "slow" in ln for ln in got)
    finally:
        served.proc.send_signal(signal.SIGINT)
        served.proc.wait(60)  # the streams never hold the shutdown
        served.finish()
