"""LlamaServer against the real llama-server and a real GGUF: the end-to-end truth."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from process_helpers import alive, free_port

from llamasc.errors import SpawnError
from llamasc.process import LaunchSpec, LlamaServer

pytestmark = [pytest.mark.real, pytest.mark.anyio]
SMALL = ("-c", "512", "-np", "1", "--no-webui")


async def test_real_server_starts_answers_and_stops(
    llama_server_bin: Path, smollm2_path: Path
) -> None:
    spec = LaunchSpec(llama_server_bin, smollm2_path, SMALL, free_port(), label="real")
    server = await LlamaServer.start(spec, ready_timeout=120)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            r = await client.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4},
            )
        assert r.status_code == 200
        # /health turns 200 a moment before llama-server logs its readiness line, so the line
        # is looked for after a request, not the instant start() returns.
        assert any("listening on" in line for line in server.tail(200))
        body = r.json()
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert 1 <= body["usage"]["completion_tokens"] <= 4
        assert body["timings"]["predicted_n"] == body["usage"]["completion_tokens"]
    finally:
        rc = await server.stop(grace=10)
    assert rc == 0  # SIGTERM after load: llama-server cleans up and exits 0
    assert not alive(server.pid)


async def test_real_corrupt_model_is_a_spawn_error(llama_server_bin: Path, tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"garbage!garbage!garbage!")
    spec = LaunchSpec(llama_server_bin, bad, SMALL, free_port())
    with pytest.raises(SpawnError) as err:
        await LlamaServer.start(spec, ready_timeout=60)
    e = err.value
    assert e.returncode == 1
    assert "invalid magic characters" in str(e)  # llama-server's own words for the cause
    assert e.stderr_tail[-1].endswith("exiting due to model loading error")


async def test_real_bind_failure_is_a_spawn_error(llama_server_bin: Path, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        spec = LaunchSpec(llama_server_bin, tmp_path / "unused.gguf", SMALL, port)
        with pytest.raises(SpawnError, match=f"couldn't bind HTTP server socket.*port: {port}"):
            await LlamaServer.start(spec, ready_timeout=60)
