"""ChatClient's streams and completions against httpx.MockTransport: parsing, errors, closing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from llamasc.client import ChatClient, Completion, Timings
from llamasc.errors import LlamascError, UpstreamError, UpstreamStatusError

pytestmark = pytest.mark.anyio

TIMINGS = {"prompt_n": 5, "prompt_ms": 20.0, "predicted_n": 3, "predicted_per_second": 150.0}


def sse(*events: dict[str, Any] | str) -> bytes:
    out = []
    for ev in events:
        if isinstance(ev, str) and ev.startswith(":"):  # an SSE comment (keep-alive)
            out.append(f"{ev}\n\n")
        else:
            out.append(f"data: {ev if isinstance(ev, str) else json.dumps(ev)}\n\n")
    return "".join(out).encode()


def chat_chunk(
    content: str | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {"model": "m", "choices": [{"delta": delta, "finish_reason": finish}], **extra}


def text_chunk(text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "choices": [{"text": text, "finish_reason": finish}], **extra}


class Recorder:
    """A MockTransport handler that records request bodies and answers with ``reply``."""

    def __init__(self, reply: httpx.Response) -> None:
        self.reply = reply
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        self.bodies.append(json.loads(request.content))
        return self.reply


def client_for(handler: Any) -> ChatClient:
    return ChatClient("http://upstream.test", transport=httpx.MockTransport(handler))


async def test_chat_stream_yields_pieces_then_completion_with_timings() -> None:
    body = sse(
        chat_chunk("Hel"),
        ": keep-alive comment",
        chat_chunk("lo"),
        chat_chunk(None, "stop", timings=TIMINGS, usage={"completion_tokens": 2}),
        "[DONE]",
    )
    rec = Recorder(httpx.Response(200, content=body))
    async with client_for(rec) as client:
        stream = client.stream_chat([{"role": "user", "content": "hi"}], model="m", max_tokens=4)
        pieces = [p async for p in stream]
    assert pieces == ["Hel", "lo"]
    assert rec.paths == ["/v1/chat/completions"]
    assert rec.bodies[0]["stream"] is True
    assert rec.bodies[0]["max_tokens"] == 4
    done = stream.completion
    assert done is not None
    assert (done.text, done.finish_reason, done.usage) == (
        "Hello",
        "stop",
        {"completion_tokens": 2},
    )
    assert isinstance(done.timings, Timings)
    assert done.timings.decode_tokens_per_second == 150.0
    assert done.timings.prompt_tokens == 5
    assert done.timings.prompt_seconds == 0.02
    assert done.timings["predicted_n"] == 3  # still llama-server's own keys
    assert done.ttft_s is not None


async def test_text_stream_reads_completion_text_pieces() -> None:
    body = sse(text_chunk(" return"), text_chunk(" n", "length"), "[DONE]")
    rec = Recorder(httpx.Response(200, content=body))
    async with client_for(rec) as client:
        stream = client.stream_complete("def f(n):", stop=["\n\n"])
        done = await stream.collect()
    assert rec.paths == ["/v1/completions"]
    assert rec.bodies[0]["prompt"] == "def f(n):"
    assert rec.bodies[0]["stop"] == ["\n\n"]
    assert (done.text, done.finish_reason) == (" return n", "length")
    assert done.timings == Timings()  # nothing reported: an empty mapping, properties None
    assert done.timings.decode_tokens_per_second is None


async def test_complete_whole_answer() -> None:
    reply = {"model": "m", "choices": [{"text": "42", "finish_reason": "stop"}], "timings": TIMINGS}
    rec = Recorder(httpx.Response(200, json=reply))
    async with client_for(rec) as client:
        done = await client.complete("6*7=", max_tokens=2)
    assert "stream" not in rec.bodies[0]
    assert (done.text, done.finish_reason) == ("42", "stop")
    assert done.timings.decode_tokens == 3


async def test_error_event_mid_stream_raises_upstream_error() -> None:
    body = sse(chat_chunk("a"), {"error": {"message": "upstream died", "type": "server_error"}})
    async with client_for(Recorder(httpx.Response(200, content=body))) as client:
        stream = client.stream_chat([])
        assert await stream.__anext__() == "a"
        with pytest.raises(UpstreamError, match="upstream died"):
            await stream.__anext__()


async def test_http_error_keeps_status_code_and_details() -> None:
    envelope = {
        "error": {
            "message": "2 problems",
            "type": "invalid_request_error",
            "code": "invalid_flags",
            "details": ["--port 1: owned by the pool", "--rpc x: network"],
        }
    }
    async with client_for(Recorder(httpx.Response(400, json=envelope))) as client:
        with pytest.raises(UpstreamStatusError) as err:
            await client.stream_chat([]).collect()
        with pytest.raises(UpstreamStatusError, match="HTTP 400: 2 problems"):
            await client.chat([])
    assert err.value.status == 400
    assert err.value.upstream_code == "invalid_flags"
    assert err.value.upstream_message == "2 problems"
    assert err.value.details == ("--port 1: owned by the pool", "--rpc x: network")


async def test_error_hook_replaces_the_error() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    seen: list[LlamascError] = []

    async def hook(err: LlamascError) -> LlamascError:
        seen.append(err)
        return LlamascError("explained")

    client = ChatClient("http://x.test", transport=httpx.MockTransport(boom), on_error=hook)
    async with client:
        with pytest.raises(LlamascError, match=r"^explained$"):
            await client.complete("p")
        with pytest.raises(LlamascError, match=r"^explained$"):
            await client.stream_complete("p").collect()
    assert len(seen) == 2
    assert all(isinstance(e, UpstreamError) for e in seen)


class EndlessBody(httpx.AsyncByteStream):
    """An SSE body that never ends on its own and records whether it was closed."""

    def __init__(self) -> None:
        self.sent = 0
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.sent += 1
            yield sse(chat_chunk(f"t{self.sent} "))
            await asyncio.sleep(0.001)

    async def aclose(self) -> None:
        self.closed.set()


def endless_client() -> tuple[ChatClient, EndlessBody]:
    body = EndlessBody()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=body))
    return ChatClient("http://x.test", transport=transport), body


async def test_breaking_out_of_a_stream_closes_it() -> None:
    client, body = endless_client()
    async with client:
        async for piece in client.stream_chat([]):
            if piece == "t3 ":
                break
        # The dropped stream's generator is closed by the event loop's finalizer hook.
        async with asyncio.timeout(5):
            await body.closed.wait()
    assert body.sent < 10


async def test_aclose_and_async_with_close_the_stream() -> None:
    client, body = endless_client()
    async with client:
        async with client.stream_chat([]) as stream:
            assert await stream.__anext__() == "t1 "
        assert body.closed.is_set()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        assert stream.completion is None  # it never finished


async def test_cancelling_the_consuming_task_closes_the_stream() -> None:
    client, body = endless_client()
    got: list[str] = []

    async def consume() -> None:
        async for piece in client.stream_chat([]):
            got.append(piece)

    async with client:
        task = asyncio.create_task(consume())
        async with asyncio.timeout(5):
            while len(got) < 3:
                await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert body.closed.is_set()


async def test_chat_stream_true_still_returns_the_whole_completion() -> None:
    body = sse(chat_chunk("x"), chat_chunk("y", "stop"), "[DONE]")
    async with client_for(Recorder(httpx.Response(200, content=body))) as client:
        done = await client.chat([], stream=True, max_tokens=2)
    assert isinstance(done, Completion)
    assert done.text == "xy"
    assert done.ttft_s is not None


def test_completion_accepts_a_plain_timings_dict() -> None:
    done = Completion(text="", finish_reason=None, timings={"predicted_per_second": 9})
    assert done.timings.decode_tokens_per_second == 9.0
