"""`llamasc history` and `llamasc top` against a running daemon (subprocess) and against none."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from free_ports import free_port_block

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def llamasc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamasc", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "220", **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, fake_llama_server_bin: Path) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("history")
    models = {}
    for m in ("m1", "m2"):
        (tmp / f"{m}.gguf").write_bytes(b"GGUF")
        models[m] = str(tmp / f"{m}.gguf")
    (tmp / "map.json").write_text(json.dumps(models))
    lo, hi = free_port_block(20)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA", "MAX_", "PORT_"))}
    env.update(
        LLAMA_SERVER_BIN=str(fake_llama_server_bin),
        MODEL_DIR_MAP_FILE=str(tmp / "map.json"),
        LLAMA_SIDECAR_BIND="127.0.0.1:0",
        PORT_RANGE=f"{lo}-{hi}",
        BASE_ARGS='["-c", "512"]',
        LLAMASC_HOME=str(tmp / "home"),
        LLAMASC_API_KEY="hk",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamasc", "serve"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().split(" at ", 1)[1].split("/v1", 1)[0]
    auth = {"Authorization": "Bearer hk"}
    for model in ("m1", "m2", "m1"):
        r = httpx.post(url + "/v1/chat/completions", json={"model": model, **CHAT}, headers=auth)
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = httpx.get(url + "/api/activity", headers=auth).json()["requests"]
        if len(rows) == 3:
            break
        time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        proc.stdout.close()


def _free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_no_daemon_is_one_line_exit_1() -> None:
    url = _free_url()
    for cmd in (["history"], ["top"], ["top", "--once"]):
        out = llamasc(*cmd, "--daemon", url)
        assert out.returncode == 1, out
        assert out.stderr.strip() == (
            f"error: no llamasc daemon at {url} (is 'llamasc serve' running?)"
        )


def test_history_table_json_csv(daemon: str) -> None:
    key = {"LLAMASC_API_KEY": "hk"}
    table = llamasc("history", "--daemon", daemon, env=key)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert "MODEL" in lines[0]
    assert "TTFT" in lines[0]
    assert [ln.split()[3] for ln in lines[1:]] == ["m1", "m2", "m1"]  # newest first
    rows = json.loads(llamasc("history", "--json", "--daemon", daemon, env=key).stdout)
    assert [r["model"] for r in rows] == ["m1", "m2", "m1"]
    assert all(r["status"] == 200 for r in rows)
    only = json.loads(
        llamasc("history", "--json", "--model", "m2", "-n", "5", "--daemon", daemon, env=key).stdout
    )
    assert [r["model"] for r in only] == ["m2"]
    out = llamasc("history", "--csv", "--daemon", daemon, env=key)
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["model"] for r in parsed] == ["m1", "m2", "m1"]
    assert parsed[0]["route"] == "/v1/chat/completions"
    assert float(parsed[0]["duration"]) > 0


def test_history_needs_the_key(daemon: str) -> None:
    out = llamasc("history", "--daemon", daemon, env={"LLAMASC_API_KEY": ""})
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1
    assert "API key" in out.stderr
    both = llamasc("history", "--json", "--csv", "--daemon", daemon, env={"LLAMASC_API_KEY": "hk"})
    assert both.returncode != 0
    assert "not both" in both.stderr


def test_top_once_shows_the_sidecars(daemon: str) -> None:
    out = llamasc("top", "--once", "--daemon", daemon, "--api-key", "hk")
    assert out.returncode == 0, out.stderr
    assert "m1" in out.stdout
    assert "m2" in out.stdout
    assert "ready" in out.stdout
    assert "waiting: nobody" in out.stdout


def test_top_quits_on_q(daemon: str) -> None:
    """Under a pseudo-terminal, q ends the live view at once with exit status 0."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: llamasc top on the pty
        os.execvpe(
            sys.executable,
            [sys.executable, "-m", "llamasc", "top", "--daemon", daemon, "--api-key", "hk"],
            {**os.environ, "COLUMNS": "200", "LINES": "40"},
        )
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"m1" not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
        assert b"m1" in seen, seen[-500:]
        os.write(fd, b"q")
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0
                return
            with contextlib.suppress(OSError):
                os.read(fd, 65536)
            time.sleep(0.05)
        raise AssertionError("llamasc top did not quit on q")
    finally:
        os.close(fd)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
