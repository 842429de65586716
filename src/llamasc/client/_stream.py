"""One streamed answer: the text pieces as they arrive, then the whole :class:`Completion`.

A :class:`TextStream` owns its HTTP response. It is closed when iteration ends, when the
consumer calls :meth:`TextStream.aclose` (or leaves ``async with``), when the consuming task
is cancelled, and, for a consumer that just ``break``s out of ``async for``, when the
stream is dropped (the event loop then closes the inner async generator). Closing the
response closes the connection, which is how llama-server learns to stop generating.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import httpx

from llamasc.client._completion import Completion
from llamasc.client._sse import iter_sse_data
from llamasc.client._timings import Timings
from llamasc.errors import LlamascError, UpstreamError, UpstreamStatusError

Kind = Literal["chat", "text"]
ErrorHook = Callable[[LlamascError], Awaitable[LlamascError]]


def status_error(what: str, resp: httpx.Response) -> UpstreamStatusError:
    """``<what> -> HTTP 400: <message>``, keeping the envelope's code and details."""
    code: str | None = None
    details: list[str] = []
    message = resp.text[:300] or resp.reason_phrase
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        message = str(err.get("message", err))
        code = err.get("code") if isinstance(err.get("code"), str) else None
        if isinstance(err.get("details"), list):
            details = [str(d) for d in err["details"]]
    elif body is not None:
        message = str(body)[:300]
    return UpstreamStatusError(
        f"{what} -> HTTP {resp.status_code}: {message}",
        status=resp.status_code,
        upstream_code=code,
        upstream_message=message,
        details=details,
    )


@dataclass
class _Accumulator:
    """Folds OpenAI stream chunks (chat ``delta.content`` or completion ``text``)."""

    kind: Kind
    start: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    finish: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    ttft: float | None = None

    def feed(self, chunk: dict[str, Any]) -> list[str]:
        """Take one chunk; return its new text pieces."""
        if "error" in chunk:
            err = chunk["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise UpstreamError(f"stream failed: {msg}")
        self.model = chunk.get("model", self.model)
        pieces: list[str] = []
        for choice in chunk.get("choices") or []:
            if self.kind == "chat":
                delta = choice.get("delta") or {}
                piece, think = delta.get("content"), delta.get("reasoning_content")
            else:
                piece, think = choice.get("text"), None
            if (piece or think) and self.ttft is None:
                self.ttft = time.perf_counter() - self.start
            if piece:
                pieces.append(piece)
            if think:
                self.reasoning.append(think)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if chunk.get("timings"):
            self.timings = chunk["timings"]
        self.parts.extend(pieces)
        return pieces

    def completion(self) -> Completion:
        return Completion(
            text="".join(self.parts),
            reasoning="".join(self.reasoning),
            finish_reason=self.finish,
            usage=self.usage,
            timings=Timings(self.timings),
            ttft_s=self.ttft,
            elapsed_s=time.perf_counter() - self.start,
            model=self.model,
        )


class TextStream:
    """Async iterator of the text pieces of one streamed answer; ``completion`` once done.

    ``async with client.stream_chat(msgs) as s: async for piece in s: ...``, or plain
    ``async for``. After the last piece, :attr:`completion` holds the whole answer with
    finish reason, usage and llama-server's timings.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        path: str,
        body: dict[str, Any],
        *,
        kind: Kind,
        headers: dict[str, str] | None = None,
        on_error: ErrorHook | None = None,
    ) -> None:
        self._result = _Result()
        # The generator must not refer to this object: dropped after a `break`, the stream
        # is then freed at once, and the event loop closes the generator (and the response).
        self._gen = _run(
            http, path, body, kind=kind, headers=headers, on_error=on_error, result=self._result
        )

    @property
    def completion(self) -> Completion | None:
        """The whole answer, once the stream has ended (None if it was closed early)."""
        return self._result.completion

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> str:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Close the HTTP stream now (the server stops generating); idempotent."""
        await self._gen.aclose()

    async def __aenter__(self) -> TextStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def collect(self) -> Completion:
        """Read the rest of the stream and return the whole answer."""
        async for _ in self:
            pass
        assert self.completion is not None
        return self.completion


@dataclass
class _Result:
    completion: Completion | None = None


async def _run(
    http: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    *,
    kind: Kind,
    headers: dict[str, str] | None,
    on_error: ErrorHook | None,
    result: _Result,
) -> AsyncGenerator[str, None]:
    async def fail(err: LlamascError) -> LlamascError:
        return await on_error(err) if on_error is not None else err

    acc = _Accumulator(kind)
    what = "chat completion" if kind == "chat" else "completion"
    try:
        async with http.stream("POST", path, json=body, headers=headers) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise status_error(what, resp)
            async for data in iter_sse_data(resp.aiter_lines()):
                if data == "[DONE]":
                    break
                for piece in acc.feed(json.loads(data)):
                    yield piece
    except httpx.TransportError as exc:
        raise await fail(UpstreamError(f"stream from {http.base_url} failed: {exc!r}")) from None
    except json.JSONDecodeError as exc:
        raise await fail(UpstreamError(f"stream sent invalid JSON: {exc}")) from None
    except LlamascError as exc:
        raise await fail(exc) from None
    result.completion = acc.completion()


__all__ = ["TextStream", "status_error"]
