"""The relay against scripted upstreams that misbehave on purpose: stale keep-alive
connections, a crash after the request arrived, a body cut short; and the timings parser."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from server_fakes import AppFactory, FakePool, chat

from llamasc.server.relay import find_timings

pytestmark = pytest.mark.anyio

_BODY = json.dumps({"object": "chat.completion", "timings": {"predicted_n": 1}}).encode()
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), json.dumps(data).encode())


_MESSAGES = (
    _event("message_start", {"type": "message_start", "message": {"id": "msg_up"}}),
    _event("content_block_start", {"type": "content_block_start", "index": 0}),
    _event("content_block_delta", {"type": "content_block_delta", "index": 0}),
    _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
    _event("message_stop", {"type": "message_stop"}),
)


class Scripted:
    """An upstream whose ``n``-th request on each connection gets ``script[n]``:
    "ok", "drop" (read the request, close without answering), "short" (promise 100
    bytes, send 10, close), "sse-cut" (two SSE events, then close mid-stream), "messages"
    and "messages-no-start" (an Anthropic Messages stream, with and without its opening
    ``message_start``, as llama-server sometimes sends it) or "hang"
    (never answer; ``hung_up`` is set once the relay closes the connection)."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.requests = 0
        self.connections = 0
        self.hung_up = threading.Event()
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for action in self.script:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.requests += 1
                if action == "ok":
                    writer.write(_OK)
                    await writer.drain()
                    continue
                if action == "hang":
                    await reader.read()  # returns at the relay's EOF
                    self.hung_up.set()
                    break
                if action == "short":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                elif action in ("messages", "messages-no-start"):
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n"
                    )
                    events = _MESSAGES if action == "messages" else _MESSAGES[1:]
                    stream = b"".join(events)
                    # in pieces that split the first event, as a network may
                    for piece in (stream[:7], stream[7:40], stream[40:]):
                        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    continue
                elif action == "sse-cut":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n"
                    )
                    for n in (1, 2):
                        event = b'data: {"n": %d}\n\n' % n
                        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                break  # "drop" and the cut answers end the connection
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://llamasc")


async def test_stale_keepalive_is_retried_once_on_a_fresh_connection(
    make_app: AppFactory,
) -> None:
    up = Scripted(["ok", "drop"])  # every connection dies on its second request
    async with up as url:
        app = make_app(FakePool(url, ["m1"]))
        async with await _client(app) as c:
            for _ in range(4):
                r = await c.post("/v1/chat/completions", json=chat("m1"))
                assert r.status_code == 200, r.text
    # 1: new A ok; 2: reuses A, dropped, retried on new B; 3: new C ok (the retry's own
    # connection is not kept); 4: reuses C, dropped, retried on new D
    assert up.requests == 6
    assert up.connections == 4


async def test_failure_after_a_fresh_send_is_502_not_replayed(make_app: AppFactory) -> None:
    up = Scripted(["drop"])
    async with up as url:
        app = make_app(FakePool(url, ["m1"]))
        async with await _client(app) as c:
            r = await c.post("/v1/chat/completions", json=chat("m1"))
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["source"] == "upstream"
    assert err["code"] == "upstream_failed"
    assert up.requests == 1


async def test_upstream_refusing_connections_is_502(make_app: AppFactory) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    app = make_app(FakePool(f"http://127.0.0.1:{port}", ["m1"]))
    async with await _client(app) as c:
        r = await c.post("/v1/chat/completions", json=chat("m1"))
    assert r.status_code == 502
    assert r.json()["error"]["source"] == "upstream"


async def test_sse_cut_short_ends_with_an_error_event(make_app: AppFactory) -> None:
    up = Scripted(["sse-cut"])
    async with up as url:
        app = make_app(FakePool(url, ["m1"]))
        async with await _client(app) as c:
            r = await c.post("/v1/chat/completions", json=chat("m1", stream=True))
    assert r.status_code == 200
    events = [ln[6:] for ln in r.text.split("\n") if ln.startswith("data: ")]
    assert [json.loads(e) for e in events[:2]] == [{"n": 1}, {"n": 2}]
    assert json.loads(events[2])["error"]["source"] == "upstream"
    assert len(events) == 3  # no [DONE]


async def test_messages_stream_without_message_start_gets_one(make_app: AppFactory) -> None:
    body = {"model": "m1", "max_tokens": 8, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    up = Scripted(["messages", "messages-no-start"])
    async with up as url:
        app = make_app(FakePool(url, ["m1"]))
        async with await _client(app) as c:
            whole = await c.post("/v1/messages", json=body)
            fixed = await c.post("/v1/messages", json=body)
            as_chat = await c.post("/v1/chat/completions", json=chat("m1"))
    assert whole.content == b"".join(_MESSAGES)  # an intact stream passes byte for byte
    assert fixed.status_code == 200
    assert fixed.content.endswith(b"".join(_MESSAGES[1:]))
    first, _, _ = fixed.content.partition(b"\n\n")
    kind, data = first.split(b"\n")
    assert kind == b"event: message_start"
    start = json.loads(data[6:])
    assert start["type"] == "message_start"
    assert start["message"]["model"] == "m1"
    assert start["message"]["role"] == "assistant"
    assert start["message"]["content"] == []
    assert as_chat.status_code == 200  # other routes are not touched


@pytest.mark.parametrize(
    ("stream", "opened"),
    [
        (b"", False),
        (b'event: error\ndata: {"type":"error"}\n\n', False),
        (b'data: {"type":"message_start"}\n\n', False),
        (b'data: {"type":"ping"}\n\ndata: {"type":"message_start"}\n\n', False),
        (b'data: {"type":"message_stop"}\n\n', True),
        (b"event: content_block_start\ndata: {}\n\n", True),
        (b"event: content_block_sta", False),  # cut short: flushed as it is at the close
    ],
)
def test_message_start_opens_only_streams_that_lack_it(stream: bytes, opened: bool) -> None:
    from llamasc.server.messages import MessageStart

    fix = MessageStart("m1")
    out = b"".join(fix.feed(stream[i : i + 3]) for i in range(0, len(stream), 3)) + fix.flush()
    assert out.endswith(stream)
    assert out.startswith(b"event: message_start\n") is opened
    assert fix.feed(b"later") == b"later"


@pytest.fixture
def uvicorn_app() -> Iterator[Any]:
    """Serve an app with real uvicorn in a thread; yields a function app -> base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(app: Any) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=lambda: asyncio.run(server.serve([sock])), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def threaded_upstream() -> Iterator[Callable[[list[str]], tuple[Scripted, str]]]:
    """Start Scripted upstreams in their own threads (the daemon's loop lives in another)."""
    started: list[tuple[asyncio.AbstractEventLoop, threading.Thread, dict[str, Any]]] = []

    def start(script: list[str]) -> tuple[Scripted, str]:
        up = Scripted(script)
        ready = threading.Event()
        holder: dict[str, Any] = {}

        async def main() -> None:
            async with up as url:
                holder["url"] = url
                holder["stop"] = asyncio.Event()
                ready.set()
                await holder["stop"].wait()

        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        assert ready.wait(10)
        started.append((loop, thread, holder))
        return up, str(holder["url"])

    yield start
    for loop, thread, holder in started:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
        loop.close()


def _uvicorn_daemon_app(upstream_url: str) -> Any:
    from llamasc.config import ModelCatalog, ModelEntry
    from llamasc.config.settings import settings_from_sources
    from llamasc.server import create_app

    pool = FakePool(upstream_url, ["m1"])
    catalog = ModelCatalog.of([ModelEntry("m1", Path("m1.gguf"))])
    return create_app(settings_from_sources(env={}), pool, catalog=catalog)


def test_non_stream_body_cut_short_breaks_the_client_connection(
    threaded_upstream: Any, uvicorn_app: Any
) -> None:
    _, upstream_url = threaded_upstream(["short"])
    url = uvicorn_app(_uvicorn_daemon_app(upstream_url))
    # a truncated body must not pass for a complete one
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.post(url + "/v1/chat/completions", json=chat("m1"), timeout=10)


def test_client_leaving_a_non_stream_request_closes_the_upstream_request(
    threaded_upstream: Any, uvicorn_app: Any
) -> None:
    up, upstream_url = threaded_upstream(["hang"])
    url = uvicorn_app(_uvicorn_daemon_app(upstream_url))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/chat/completions", json=chat("m1"), timeout=0.5)
    # nothing was sent back yet; still, llama-server must learn that nobody waits any more
    assert up.hung_up.wait(5), "the upstream connection was left open"
    assert up.requests == 1


@pytest.mark.parametrize(
    ("before", "last", "expected"),
    [
        (b"", b'{"id":"x","timings":{"predicted_n":3}}', {"predicted_n": 3}),
        (b'data: {"timings": {"prompt_n"', b": 5}}\n\ndata: [DONE]\n\n", {"prompt_n": 5}),
        (b"", b'{"choices": []}', None),
        (b"", b'{"timings": [1, 2]}', None),
        (b"", b'{"timings": {"broken', None),
        (b"", b"", None),
    ],
)
def test_find_timings(before: bytes, last: bytes, expected: dict[str, Any] | None) -> None:
    assert find_timings(before, last) == expected


@given(
    timings=st.dictionaries(st.text(max_size=8), st.integers() | st.floats(allow_nan=False)),
    pad=st.binary(max_size=40000),
    cut=st.integers(min_value=0, max_value=200),
)
def test_find_timings_reads_the_last_object_wherever_the_chunks_split(
    timings: dict[str, Any], pad: bytes, cut: int
) -> None:
    body = pad + b'{"x": 1, "timings": ' + json.dumps(timings).encode() + b"}\n\n"
    cut = min(cut, len(body))
    assert find_timings(body[: len(body) - cut], body[len(body) - cut :]) == timings
