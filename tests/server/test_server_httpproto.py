"""The response head waits for its body (one write), never longer than one loop turn."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import uvicorn

from free_ports import free_port
from llamasc.server._httpproto import (
    TESTED_UVICORN,
    CoalescingHttpToolsProtocol,
    _CoalescingTransport,
    coalescing_enabled,
)

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def wrap() -> tuple[_CoalescingTransport, RecordingTransport]:
    real = RecordingTransport()
    return _CoalescingTransport(real, asyncio.get_running_loop()), real  # type: ignore[arg-type]


async def test_head_and_body_sent_in_one_turn_leave_in_one_write() -> None:
    t, real = wrap()
    t.write(HEAD)
    t.write(b'{"ok":true}')
    assert real.writes == [HEAD + b'{"ok":true}']
    await asyncio.sleep(0)
    assert real.writes == [HEAD + b'{"ok":true}']


async def test_a_lone_head_leaves_at_the_end_of_the_turn() -> None:
    t, real = wrap()
    t.write(HEAD)
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [HEAD]
    t.write(b"data: 1\n\n")
    assert real.writes == [HEAD, b"data: 1\n\n"]


async def test_close_flushes_a_held_head_first_and_other_calls_pass_through() -> None:
    t, real = wrap()
    t.write(HEAD)
    t.close()
    assert real.writes == [HEAD]
    assert real.closed
    assert t.get_extra_info("peername") == "info:peername"


# --- the tested uvicorn range and the fallback to the plain protocol ---------------------


def test_only_the_tested_uvicorn_releases_get_the_coalescing_transport() -> None:
    from llamasc.server._httpproto import coalescing_supported

    low, high = TESTED_UVICORN
    assert coalescing_supported(f"{low[0]}.{low[1]}.0")
    assert not coalescing_supported(f"{high[0]}.{high[1]}.0")
    assert not coalescing_supported(f"{low[0]}.{low[1] - 1}.9")
    assert not coalescing_supported("not a version")
    assert coalescing_supported(uvicorn.__version__), "the installed uvicorn is the tested one"


async def _serve_two_requests(caplog: pytest.LogCaptureFixture) -> list[type]:
    """Two connections to a real uvicorn on our protocol; the transport type each got."""
    seen: list[type] = []

    class Recording(CoalescingHttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            seen.append(type(self.transport))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=Recording, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        for _ in range(2):
            async with httpx.AsyncClient() as client:
                resp = await client.get(f"http://127.0.0.1:{port}/")
            assert (resp.status_code, resp.text) == (200, "ok")
    finally:
        server.should_exit = True
        await task
    return seen


async def test_another_uvicorn_falls_back_to_the_plain_transport_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(uvicorn, "__version__", "99.0.0")
    coalescing_enabled.cache_clear()
    caplog.set_level(logging.INFO, "llamasc.server._httpproto")
    try:
        seen = await _serve_two_requests(caplog)
    finally:
        coalescing_enabled.cache_clear()
    assert len(seen) == 2
    assert _CoalescingTransport not in seen
    said = [r.getMessage() for r in caplog.records if r.name == "llamasc.server._httpproto"]
    assert len(said) == 1
    assert "99.0.0 is outside the tested range" in said[0]


async def test_the_switch_turns_coalescing_off_and_the_tested_uvicorn_has_it_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    coalescing_enabled.cache_clear()
    try:
        assert set(await _serve_two_requests(caplog)) == {_CoalescingTransport}
        monkeypatch.setenv("LLAMASC_COALESCE_HEAD", "0")
        coalescing_enabled.cache_clear()
        assert _CoalescingTransport not in await _serve_two_requests(caplog)
    finally:
        coalescing_enabled.cache_clear()
