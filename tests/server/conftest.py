"""Fixtures for the daemon's tests: the app in-process over a fake pool, and a real daemon
(uvicorn + the real Pool) in a thread, against our fake llama-server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fakes import (
    AppFactory,
    DaemonFactory,
    FakePool,
    FakeUpstream,
    ThreadDaemon,
    free_port_range,
    start_fake_upstream,
)

from llamasc.config import ModelCatalog, ModelEntry
from llamasc.config.settings import settings_from_sources
from llamasc.server import LlamascApp, create_app


@pytest.fixture(scope="session")
def fake_upstream(fake_llama_server_bin: Path) -> Iterator[FakeUpstream]:
    """One fake llama-server for the in-process tests (they never stop it)."""
    up = start_fake_upstream(fake_llama_server_bin)
    yield up
    up.stop()


@pytest.fixture
def fake_pool(fake_upstream: FakeUpstream) -> FakePool:
    return FakePool(fake_upstream.base_url, ["m1", "m2"])


@pytest.fixture
async def make_app(fake_pool: FakePool) -> AsyncIterator[AppFactory]:
    """Apps over a fake pool; their upstream connections are closed at teardown."""
    apps: list[LlamascApp] = []

    def make(pool: Any = None, **cli: Any) -> LlamascApp:
        pool = fake_pool if pool is None else pool
        settings = settings_from_sources(env={}, cli=cli)
        catalog = ModelCatalog.of([ModelEntry(m, Path(f"{m}.gguf")) for m in pool.models])
        app = create_app(settings, pool, catalog=catalog)
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.llamasc.shutdown()


@pytest.fixture
async def client(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://llamasc") as c:
        yield c


@pytest.fixture
def daemon_factory(
    tmp_path: Path, fake_llama_server_bin: Path, isolated_env: Path
) -> Iterator[DaemonFactory]:
    """Start real daemons over the fake llama-server; models m1, m2 (empty GGUF files)."""
    started: list[ThreadDaemon] = []
    models = {m: str(tmp_path / f"{m}.gguf") for m in ("m1", "m2")}
    for path in models.values():
        Path(path).write_bytes(b"GGUF")
    model_map = tmp_path / "models.json"
    model_map.write_text(json.dumps(models))

    def make(file_data: dict[str, Any] | None = None, **cli: Any) -> ThreadDaemon:
        lo, hi = free_port_range()
        values: dict[str, Any] = {
            "llama_server_bin": str(fake_llama_server_bin),
            "model_map_file": str(model_map),
            "bind": "127.0.0.1:0",
            "port_range": f"{lo}-{hi}",
            "base_args": '["-c", "512"]',
            "home": str(tmp_path / "home"),
            "health_interval": "0.5",
            "health_timeout": "10",
            "stop_grace": "2",
            "shutdown_grace": "5",
        }
        values.update({k: v for k, v in cli.items()})
        settings = settings_from_sources(env={}, cli=values, file_data=file_data)
        d = ThreadDaemon(settings)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.thread.is_alive():
            d.stop()


RealDaemonFactory = Callable[..., ThreadDaemon]


@pytest.fixture
def real_daemon(
    tmp_path: Path, llama_server_bin: Path, smollm2_path: Path, isolated_env: Path
) -> Iterator[RealDaemonFactory]:
    """Start daemons over the real llama-server: ``models`` (id -> GGUF, default SmolLM2 as
    ``smol``), the native config ``file`` and CLI ``values``; stopped at teardown."""
    started: list[ThreadDaemon] = []

    def make(
        models: dict[str, Path] | None = None, file: dict[str, Any] | None = None, **cli: Any
    ) -> ThreadDaemon:
        model_map = tmp_path / "models.json"
        model_map.write_text(
            json.dumps({k: str(v) for k, v in (models or {"smol": smollm2_path}).items()})
        )
        lo, hi = free_port_range()
        values: dict[str, Any] = {
            "llama_server_bin": str(llama_server_bin),
            "model_map_file": str(model_map),
            "bind": "127.0.0.1:0",
            "port_range": f"{lo}-{hi}",
            "base_args": '["-c", "512", "-np", "1", "-t", "2"]',
            "home": str(tmp_path / "home"),
            "health_timeout": "120",
            **cli,
        }
        d = ThreadDaemon(settings_from_sources(env={}, cli=values, file_data=file))
        started.append(d)
        return d

    yield make
    for d in started:
        if d.thread.is_alive():
            d.stop()
