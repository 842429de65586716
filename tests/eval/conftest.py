"""Servers for the eval tests: our fake llama-server and the real one, on free loopback ports."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eval_test_helpers import DATA, free_port


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _wait_healthy(server: Server, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    delay = 0.02
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"server exited ({server.proc.returncode}): {server.log.read_text()[-2000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/health", timeout=1.0).status_code == 200:
                return
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise AssertionError(f"server not healthy in {deadline_s}s: {server.log.read_text()[-2000:]}")


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start a llama-server-like binary; every server is stopped at teardown."""
    started: list[Server] = []

    def start(binary: Path, model: Path | str, *flags: str, port: int | None = None) -> Server:
        port = port or free_port()
        log = tmp_path / f"server-{port}-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = Server(proc, port, log)
        started.append(server)
        _wait_healthy(server, 120)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The fixtures under the names ``eval ab --data-dir`` looks for."""
    out = tmp_path / "data"
    out.mkdir()
    for name in ("mmlu", "gsm8k", "humaneval"):
        shutil.copy(DATA / f"{name}_small.jsonl", out / f"{name}.jsonl")
    return out
