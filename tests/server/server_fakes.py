"""Test doubles for the daemon: a fake pool that leases one upstream, and process helpers."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from free_ports import free_port, free_port_block
from llamasc.config.settings import Settings
from llamasc.errors import LlamascError, NotFoundError, UnknownModelError
from llamasc.pool.upstream import Upstream
from llamasc.server import Daemon

if TYPE_CHECKING:
    from llamasc.server import LlamascApp


def free_port_range(width: int = 40) -> tuple[int, int]:
    """Ports for a pool's children, below the ephemeral range (see free_ports)."""
    return free_port_block(width)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class FakeUpstream:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def start_fake_upstream(binary: Path, *args: str) -> FakeUpstream:
    """Our fake llama-server on a free port, ready."""
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-m", "fake.gguf", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    up = FakeUpstream(proc, port)
    try:
        wait_until(lambda: http_ok(up.base_url + "/health"), 20, "the fake llama-server")
    except AssertionError:
        up.stop()
        raise
    return up


@dataclass
class FakeInfo:
    hash: str
    model: str
    flags: Sequence[str]
    port: int
    pid: int | None = 4242
    state: str = "ready"
    started: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    in_flight: int = 0
    requests_served: int = 0
    last_timings: Mapping[str, Any] | None = None
    upstream: Upstream | None = None  # the real pool's children own theirs the same way


@dataclass
class FakeLease:
    info: FakeInfo
    base_url: str

    @property
    def key(self) -> str:
        return self.info.hash

    @property
    def model_id(self) -> str:
        return self.info.model

    @property
    def port(self) -> int:
        return self.info.port

    @property
    def upstream(self) -> Upstream:
        if self.info.upstream is None:
            self.info.upstream = Upstream(self.base_url)
        return self.info.upstream

    def record(self, timings: Mapping[str, Any]) -> None:
        self.info.last_timings = dict(timings)


class FakePool:
    """Every lease points at ``base_url``; ``fail`` makes leasing raise that error."""

    def __init__(self, base_url: str, models: Sequence[str] = ("m1", "m2")) -> None:
        self.base_url = base_url
        self.port = int(base_url.rsplit(":", 1)[1])
        self.models = list(models)
        self.fail: LlamascError | None = None
        self.infos: dict[str, FakeInfo] = {}
        self.leases: list[tuple[str, tuple[str, ...]]] = []
        self.started = 0
        self.closed = 0

    async def start(self) -> None:
        self.started += 1

    async def close(self, grace: float | None = None) -> None:
        self.closed += 1
        for info in self.infos.values():
            if info.upstream is not None:
                info.upstream.close()

    @asynccontextmanager
    async def lease(self, model_id: str, user_flags: Sequence[str]) -> AsyncIterator[FakeLease]:
        if model_id not in self.models:
            raise UnknownModelError(f"unknown model {model_id!r}; known: {', '.join(self.models)}")
        if self.fail is not None:
            raise self.fail
        self.leases.append((model_id, tuple(user_flags)))
        key = hashlib.sha256(repr((model_id, tuple(user_flags))).encode()).hexdigest()
        info = self.infos.setdefault(key, FakeInfo(key, model_id, tuple(user_flags), self.port))
        info.in_flight += 1
        try:
            yield FakeLease(info, self.base_url)
        finally:
            info.in_flight -= 1
            info.requests_served += 1

    def sidecars(self) -> list[FakeInfo]:
        return list(self.infos.values())

    def find(self, key_prefix: str) -> FakeInfo:
        hits = [i for k, i in self.infos.items() if k.startswith(key_prefix)]
        if len(hits) != 1:
            raise NotFoundError(f"no sidecar {key_prefix}")
        return hits[0]

    def _drop(self, info: FakeInfo) -> FakeInfo:
        """A stopped sidecar is gone with its connections, as the real pool's children are."""
        del self.infos[info.hash]
        if info.upstream is not None:
            info.upstream.close()
        return info

    async def stop_sidecar(self, key_prefix: str) -> FakeInfo:
        return self._drop(self.find(key_prefix))

    async def stop_model(self, model_id: str) -> list[FakeInfo]:
        return [self._drop(i) for i in list(self.infos.values()) if i.model == model_id]

    async def stop_all(self) -> list[FakeInfo]:
        return [self._drop(i) for i in list(self.infos.values())]

    def logs(self, key_prefix: str, n: int = 200) -> list[str]:
        return [f"line {i}" for i in range(n)][-n:]


class ThreadDaemon:
    """A real daemon (uvicorn, the real Pool, real children) serving from a thread."""

    def __init__(self, settings: Settings, **daemon_options: Any) -> None:
        self.ready = threading.Event()
        self.daemon = Daemon(settings, on_ready=lambda info: self.ready.set(), **daemon_options)
        self.url = self.daemon.url
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="llamasc-daemon", daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise AssertionError(f"the daemon did not start: {self.error!r}")

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self.daemon.uv_config.get_loop_factory()) as r:
                r.run(self.daemon.serve())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def sidecars(self) -> list[dict[str, Any]]:
        data = httpx.get(self.url + "/sidecars", timeout=10).json()
        return list(data["sidecars"])

    def stop(self, timeout: float = 30) -> None:
        self.daemon.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the daemon did not stop"


def chat(model: str | None = "m1", max_tokens: int = 3, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": max_tokens,
        **extra,
    }
    if model is not None:
        body["model"] = model
    return body


AppFactory = Callable[..., "LlamascApp"]
DaemonFactory = Callable[..., ThreadDaemon]
