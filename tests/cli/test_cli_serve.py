"""`llamasc serve` as a user runs it: help, one-line config errors, start-up line, clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from llamasc.cli import main

URL_RE = re.compile(r"at (http://127\.0\.0\.1:\d+)/v1")


def _serve_env(tmp_path: Path, fake_bin: Path, **extra: str) -> dict[str, str]:
    model = tmp_path / "m1.gguf"
    model.write_bytes(b"GGUF")
    (tmp_path / "map.json").write_text(json.dumps({"m1": str(model)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA", "MAX_", "PORT_"))}
    env.update(
        LLAMA_SERVER_BIN=str(fake_bin),
        MODEL_DIR_MAP_FILE=str(tmp_path / "map.json"),
        LLAMA_SIDECAR_BIND="127.0.0.1:0",
        PORT_RANGE="21100-21160",
        BASE_ARGS='["-c", "512"]',
        LLAMASC_HOME=str(tmp_path / "home"),
        LOG_LEVEL="INFO",
        **extra,
    )
    return env


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, first_lines: list[str]) -> None:
        self.proc, self.url, self.first_lines = proc, url, first_lines

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_serve(env: dict[str, str], *args: str) -> Served:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamasc", "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # blocks until the daemon accepts connections
    match = URL_RE.search(first)
    if match is None:
        proc.kill()
        proc.stdout.close()
        raise AssertionError(f"no start-up line, got {first!r} (exit {proc.wait(10)})")
    return Served(proc, match.group(1), [first, proc.stdout.readline()])


@pytest.fixture
def served(tmp_path: Path, fake_llama_server_bin: Path) -> Iterator[Served]:
    s = start_serve(_serve_env(tmp_path, fake_llama_server_bin))
    yield s
    s.finish()


def test_serve_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llamasc", "serve", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0
    for needle in ("--bind", "LLAMA_SIDECAR_BIND", "MAX_SIDECARS", "--api-key", "--insecure",
                   "--log-file", "--config", "BASE_ARGS"):  # fmt: skip
        assert needle in out.stdout


@pytest.mark.parametrize(
    ("env", "args", "line"),
    [
        ({"MAX_SIDECARS": "abc"}, [], "error: MAX_SIDECARS: must be an integer >= 1, got 'abc'"),
        ({}, ["--port-range", "9-1"], "error: --port-range: must be a range of ports"),
        ({}, ["--bind", "0.0.0.0:0"], "error: refusing to listen on 0.0.0.0:0 without an API key"),
        ({"LLAMASC_CONFIG": "/nonexistent/llamasc.toml"}, [], "error: config file not found"),
        ({"BASE_ARGS": '["--port", "1"]'}, [], "error: BASE_ARGS: --port: owned by the pool"),
    ],
)
def test_invalid_configuration_is_one_line_and_exit_2(
    isolated_env: Path,
    fake_llama_server_bin: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    args: list[str],
    line: str,
) -> None:
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(fake_llama_server_bin))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as exc:
        main(["serve", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(line), err
    assert len(err.splitlines()) == 1, err


def test_config_file_error_names_the_key(
    isolated_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "llamasc.toml"
    cfg.write_text("max_sidecars = 0\n")
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--config", str(cfg)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {cfg}: max_sidecars: must be an integer >= 1, got 0"


def test_friendly_start_line_then_sigint_stops_cleanly(served: Served) -> None:
    assert "m1" in served.first_lines[0]
    assert "curl " + served.url + "/v1/chat/completions" in served.first_lines[1]
    assert "\x1b[" not in "".join(served.first_lines)  # no colour codes into a pipe
    body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(served.url + "/v1/chat/completions", json=body, timeout=30).is_success
    pid = httpx.get(served.url + "/sidecars").json()["sidecars"][0]["pid"]
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(20) == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_lets_in_flight_requests_finish(
    tmp_path: Path, fake_llama_server_bin: Path
) -> None:
    env = _serve_env(tmp_path, fake_llama_server_bin, FAKE_LLAMA_TOKEN_DELAY="0.05")
    s = start_serve(env, "--shutdown-grace", "10")
    try:
        body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 20, "stream": True}  # fmt: skip
        with httpx.stream("POST", s.url + "/v1/chat/completions", json=body, timeout=30) as r:
            chunks = r.iter_text()
            text = next(chunks)
            s.proc.send_signal(signal.SIGTERM)
            # it stops accepting at once, while this stream is still being served
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    httpx.get(s.url + "/health", timeout=2)
                except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                    # refused, or reset: a connect that raced the listener's close was still
                    # queued in the kernel's backlog and is dropped with it
                    break
            else:
                raise AssertionError("the daemon kept accepting connections after SIGTERM")
            text += "".join(chunks)
        assert text.rstrip().endswith("data: [DONE]")
        assert s.proc.wait(20) == 0
    finally:
        s.finish()


def test_log_file_gets_the_daemon_log(tmp_path: Path, fake_llama_server_bin: Path) -> None:
    log = tmp_path / "logs" / "llamasc.log"
    s = start_serve(_serve_env(tmp_path, fake_llama_server_bin), "--log-file", str(log))
    try:
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(20) == 0
    finally:
        s.finish()
    text = log.read_text()
    assert f"serving m1 at {s.url}/v1" in text
    assert "all sidecars stopped" in text
