"""The library API over httpx.MockTransport: parameters, error mapping, blocking use."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest

import llamasc
from gguf_factory import write_gguf
from llamasc.api import AsyncModel, Model, sampling
from llamasc.api._launch import open_remote, operator_args, resolve_model
from llamasc.errors import (
    AuthError,
    ConfigError,
    FlagError,
    ModelClosedError,
    UnknownModelError,
    UpstreamError,
    UpstreamStatusError,
)


def answer(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if request.url.path == "/v1/completions":
        text = f"<{body['prompt']}>"
        if body.get("stream"):
            chunks = [{"choices": [{"text": ch, "finish_reason": None}]} for ch in text]
            chunks.append({"choices": [{"text": "", "finish_reason": "stop"}]})
            data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return httpx.Response(200, content=data.encode())
        return httpx.Response(200, json={"choices": [{"text": text, "finish_reason": "stop"}]})
    reply = {"message": {"content": json.dumps(body, sort_keys=True)}, "finish_reason": "stop"}
    return httpx.Response(200, json={"choices": [reply], "timings": {"predicted_n": 1}})


def remote(handler: Any = answer, **kw: Any) -> AsyncModel:
    return open_remote("http://daemon.test/v1", transport=httpx.MockTransport(handler), **kw)


def test_sampling_drops_unset_values_and_lists_a_single_stop() -> None:
    assert sampling() == {}
    assert sampling(max_tokens=8, temperature=0.0, stop="\n", top_k=None, n_probs=2) == {
        "max_tokens": 8,
        "temperature": 0.0,
        "stop": ["\n"],
        "n_probs": 2,
    }


@pytest.mark.anyio
async def test_chat_sends_messages_model_and_parameters() -> None:
    async with remote(model="smol") as m:
        reply = await m.chat("Hi", max_tokens=3, seed=7, stop=["x", "y"])
    sent = json.loads(reply.text)
    assert sent == {
        "messages": [{"role": "user", "content": "Hi"}],
        "model": "smol",
        "max_tokens": 3,
        "seed": 7,
        "stop": ["x", "y"],
    }
    assert reply.timings.decode_tokens == 1
    assert m.closed


@pytest.mark.anyio
async def test_flags_travel_as_x_agent_flags() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-agent-flags"))
        seen.append(request.headers.get("authorization"))
        return answer(request)

    async with remote(handler, flags="--top-k 20", api_key="k") as m:
        await m.generate("p")
    async with remote(handler, flags=["--temp", "0.5"]) as m:
        await m.generate("p")
    assert seen == ["--top-k 20", "Bearer k", '["--temp", "0.5"]', None]


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_flags", FlagError),
        (404, "model_not_found", UnknownModelError),
        (401, "invalid_api_key", AuthError),
        (500, "internal_error", UpstreamStatusError),
    ],
)
@pytest.mark.anyio
async def test_daemon_errors_come_back_as_their_own_class(
    status: int, code: str, cls: type[Exception]
) -> None:
    envelope = {"error": {"message": "nope", "type": "t", "code": code, "details": ["a", "b"]}}
    m = remote(lambda request: httpx.Response(status, json=envelope))
    async with m:
        with pytest.raises(cls) as err:
            await m.chat("x")
    assert m.error is err.value
    if cls is FlagError:
        assert str(err.value) == "nope"
        assert err.value.details == ("a", "b")


@pytest.mark.anyio
async def test_a_closed_model_refuses_requests() -> None:
    m = remote()
    await m.aclose()
    await m.aclose()  # idempotent
    with pytest.raises(ModelClosedError):
        await m.generate("p")
    with pytest.raises(ModelClosedError):
        m.chat_stream("p")


def blocking(handler: Any = answer, **kw: Any) -> Model:
    async def opener() -> AsyncModel:
        return remote(handler, **kw)

    return Model.open(opener)


def test_blocking_model_generates_and_streams() -> None:
    with blocking(model="smol") as model:
        assert model.generate("ab").text == "<ab>"
        stream = model.generate_stream("ab")
        assert list(stream) == ["<", "a", "b", ">"]
        assert stream.completion is not None
        assert stream.completion.finish_reason == "stop"
        assert model.pid is None
        assert "connected" in repr(model)
    assert model.closed
    with pytest.raises(ModelClosedError):
        model.generate("x")
    model.close()  # idempotent


def test_blocking_model_from_many_threads() -> None:
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(i: int, model: Model) -> None:
        try:
            if i % 2:
                results[i] = "".join(model.generate_stream(str(i)))
            else:
                results[i] = model.generate(str(i)).text
        except BaseException as exc:  # reported below
            errors.append(exc)

    with blocking() as model:
        threads = [threading.Thread(target=work, args=(i, model)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors
    assert results == {i: f"<{i}>" for i in range(16)}


def test_transport_failure_is_an_upstream_error_kept_in_model_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with blocking(refuse) as model:
        with pytest.raises(UpstreamError, match="connection refused"):
            model.chat("hi")
        assert isinstance(model.error, UpstreamError)


def test_operator_flags_list_every_problem() -> None:
    assert operator_args("-c 512 --top-k 20", None) == ("--ctx-size", "512", "--top-k", "20")
    with pytest.raises(FlagError) as err:
        operator_args("--port 1 --rpc 10.0.0.2:50052 --no-such-flag", None)
    # the operator is trusted (issue 10): --rpc is theirs to set; --port stays the pool's
    assert len(err.value.details) == 2
    assert not any("--rpc" in d for d in err.value.details)


def test_resolve_model_path_and_id(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = write_gguf(tmp_path / "tiny-model.gguf", file_type=None)  # a real header
    assert resolve_model(gguf)[:2] == ("tiny-model", gguf.resolve())
    with pytest.raises(ConfigError, match="model file not found"):
        resolve_model(tmp_path / "missing.gguf")
    monkeypatch.setenv("MODEL_DIR_MAP_FILE", "")
    monkeypatch.setenv("LLAMASC_MODELS_DIR", str(tmp_path))
    assert resolve_model("tiny-model")[1] == gguf
    with pytest.raises(UnknownModelError, match="known models: tiny-model"):
        resolve_model("other")


def test_load_refuses_bad_flags_before_starting_anything() -> None:
    with pytest.raises(FlagError) as err:
        llamasc.load("unused.gguf", flags="--host 0.0.0.0 -c abc")
    assert len(err.value.details) == 2


def test_public_names() -> None:
    for name in llamasc.__all__:
        assert getattr(llamasc, name) is not None
    with pytest.raises(AttributeError):
        llamasc.no_such_name  # noqa: B018


class EndlessBody(httpx.AsyncByteStream):
    """An SSE body that never ends on its own; records when it is closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    async def __aiter__(self) -> Any:
        while True:
            yield b'data: {"choices": [{"text": "t", "finish_reason": null}]}\n\n'
            await asyncio.sleep(0.001)

    async def aclose(self) -> None:
        self.closed.set()


def test_breaking_out_of_a_blocking_stream_closes_it_before_the_loop_ends() -> None:
    body = EndlessBody()
    with blocking(lambda request: httpx.Response(200, stream=body)) as model:
        for i, _ in enumerate(model.generate_stream("p")):
            if i == 3:
                break
        assert body.closed.is_set()  # already: no waiting, no garbage collection needed
        with model.generate_stream("p") as stream:
            assert next(stream) == "t"
        assert stream.completion is None
