"""`llamasc ps` and `llamasc kill` against a running daemon (subprocess) and against none."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def llamasc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamasc", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Running:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.auth = {"Authorization": f"Bearer {key}"}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return llamasc(*args, "--daemon", self.url, env={"LLAMASC_API_KEY": self.key})

    def chat(self, model: str, flags: str = "") -> None:
        headers = {**self.auth, "X-Agent-Flags": flags}
        r = httpx.post(
            self.url + "/v1/chat/completions", json={"model": model, **CHAT}, headers=headers,
            timeout=30,
        )  # fmt: skip
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, fake_llama_server_bin: Path
) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("pskill")
    models = {}
    for m in ("m1", "m2"):
        (tmp / f"{m}.gguf").write_bytes(b"GGUF")
        models[m] = str(tmp / f"{m}.gguf")
    (tmp / "map.json").write_text(json.dumps(models))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA", "MAX_", "PORT_"))}
    env.update(
        LLAMA_SERVER_BIN=str(fake_llama_server_bin),
        MODEL_DIR_MAP_FILE=str(tmp / "map.json"),
        LLAMA_SIDECAR_BIND="127.0.0.1:0",
        PORT_RANGE="21200-21260",
        MAX_SIDECARS="3",
        BASE_ARGS='["-c", "512"]',
        LLAMASC_HOME=str(tmp / "home"),
        LLAMASC_API_KEY="pk",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamasc", "serve"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = line.split(" at ", 1)[1].split("/v1", 1)[0]
    try:
        yield Running(url, "pk")
    finally:
        proc.terminate()
        proc.wait(20)
        proc.stdout.close()


def test_no_daemon_is_one_line_exit_1() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    for args in (["ps"], ["kill", "--all"]):
        out = llamasc(*args, "--daemon", url)
        assert out.returncode == 1
        assert out.stderr.strip() == (
            f"error: no llamasc daemon at {url} (is 'llamasc serve' running?)"
        )
    out = llamasc("ps", env={"LLAMASC_DAEMON": url})
    assert out.returncode == 1
    assert url in out.stderr


def test_ps_and_kill(daemon: Running) -> None:
    assert daemon.cli("kill", "--all").returncode == 0
    out = daemon.cli("ps")
    assert out.returncode == 0
    assert out.stdout.strip() == "no sidecars running"

    daemon.chat("m1")
    daemon.chat("m1", "--top-k 7")
    daemon.chat("m2")
    listed = json.loads(daemon.cli("ps", "--json").stdout)
    assert sorted(s["model"] for s in listed) == ["m1", "m1", "m2"]
    table = daemon.cli("ps").stdout
    for s in listed:
        assert s["hash"][:8] in table
        assert str(s["port"]) in table
    assert "--top-k 7" in table
    assert "HASH" in table

    target = next(s for s in listed if "--top-k" in s["flags"])
    out = daemon.cli("kill", target["hash"][:8])
    assert out.returncode == 0
    assert "stopped 1 sidecar" in out.stdout
    assert target["hash"][:8] in out.stdout

    out = daemon.cli("kill", "--model", "m1")
    assert out.returncode == 0
    assert "stopped 1 sidecar" in out.stdout
    remaining = json.loads(daemon.cli("ps", "--json").stdout)
    assert [s["model"] for s in remaining] == ["m2"]

    out = daemon.cli("kill", "--all")
    assert "stopped 1 sidecar" in out.stdout
    assert daemon.cli("kill", "--all").stdout.strip() == "nothing to stop: no sidecar matched"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["kill"], 2, "exactly one"),
        (["kill", "--all", "--model", "m1"], 2, "exactly one"),
        (["kill", "deadbeef00"], 1, "no sidecar"),
        (["kill", "xyz"], 2, "hex"),
        (["kill", "--model", "nope"], 2, "unknown model"),
    ],
)
def test_kill_errors(daemon: Running, args: list[str], code: int, needle: str) -> None:
    out = daemon.cli(*args)
    assert out.returncode == code, out
    assert needle in out.stderr
    assert out.stderr.startswith("error: ")


def test_wrong_key_is_one_line(daemon: Running) -> None:
    out = llamasc("ps", "--daemon", daemon.url, "--api-key", "wrong")
    assert out.returncode == 2
    assert out.stderr.startswith("error: missing or invalid API key")
    assert len(out.stderr.strip().splitlines()) == 1
