"""The client proper: chat completions (streaming or not), /props, /v1/models, /health."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from llamasc.client._sse import iter_sse_data
from llamasc.errors import DaemonUnreachableError, UpstreamError

log = logging.getLogger(__name__)


def normalize_base_url(url: str) -> str:
    """``http://h:p``, ``http://h:p/``, ``http://h:p/v1`` all become ``http://h:p``."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if "://" not in url:
        url = "http://" + url
    return url


@dataclass
class Completion:
    """One answered request, with what the client measured and what the server reported."""

    text: str
    finish_reason: str | None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    ttft_s: float | None = None
    elapsed_s: float = 0.0
    model: str | None = None
    reasoning: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def _error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", body["error"]))
    return str(body)[:300]


class ChatClient:
    """An async client for one OpenAI-compatible endpoint. Use as ``async with``."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        flags: str | None = None,
        timeout: float = 600.0,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        hdrs = dict(headers or {})
        if api_key:
            hdrs["Authorization"] = f"Bearer {api_key}"
        if flags:
            hdrs["X-Agent-Flags"] = flags
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=hdrs,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=64, max_connections=256),
        )

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            resp = await self._client.get(path, params=params)
        except httpx.TransportError as exc:
            raise DaemonUnreachableError(f"cannot reach {self.base_url}: {exc}") from None
        if resp.status_code != 200:
            raise UpstreamError(f"GET {path} -> {resp.status_code}: {_error_message(resp)}")
        return resp.json()

    async def health(self) -> bool:
        try:
            resp = await self._client.get("/health")
        except httpx.TransportError:
            return False
        return resp.status_code == 200

    async def props(self, model: str | None = None) -> dict[str, Any]:
        """llama-server's /props; through a llamasc daemon, those of ``model``'s sidecar for
        this client's flags (the daemon starts it if it is not running)."""
        data = await self._get_json("/props", {"model": model} if model else None)
        return data if isinstance(data, dict) else {}

    async def models(self) -> list[str]:
        data = await self._get_json("/v1/models")
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        stream: bool = False,
        extra_headers: dict[str, str] | None = None,
        **params: Any,
    ) -> Completion:
        """POST /v1/chat/completions. ``params`` go into the body (max_tokens, seed, ...)."""
        body: dict[str, Any] = {"messages": messages, **params}
        if model is not None:
            body["model"] = model
        if stream:
            body["stream"] = True
            return await self._chat_stream(body, extra_headers)
        start = time.perf_counter()
        try:
            resp = await self._client.post("/v1/chat/completions", json=body, headers=extra_headers)
        except httpx.TransportError as exc:
            raise UpstreamError(f"request to {self.base_url} failed: {exc!r}") from None
        elapsed = time.perf_counter() - start
        if resp.status_code != 200:
            raise UpstreamError(
                f"chat completion -> HTTP {resp.status_code}: {_error_message(resp)}"
            )
        data = resp.json()
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        return Completion(
            text=message.get("content") or "",
            reasoning=message.get("reasoning_content") or "",
            finish_reason=choice.get("finish_reason"),
            usage=data.get("usage") or {},
            timings=data.get("timings") or {},
            elapsed_s=elapsed,
            model=data.get("model"),
            raw=data,
        )

    async def _chat_stream(
        self, body: dict[str, Any], extra_headers: dict[str, str] | None
    ) -> Completion:
        start = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        reasoning: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        model: str | None = None
        try:
            async with self._client.stream(
                "POST", "/v1/chat/completions", json=body, headers=extra_headers
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise UpstreamError(
                        f"chat completion -> HTTP {resp.status_code}: {_error_message(resp)}"
                    )
                async for data in iter_sse_data(resp.aiter_lines()):
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        err = chunk["error"]
                        msg = err.get("message", err) if isinstance(err, dict) else err
                        raise UpstreamError(f"stream failed: {msg}")
                    model = chunk.get("model", model)
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        piece = delta.get("content")
                        think = delta.get("reasoning_content")
                        if (piece or think) and ttft is None:
                            ttft = time.perf_counter() - start
                        if piece:
                            parts.append(piece)
                        if think:
                            reasoning.append(think)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    if chunk.get("timings"):
                        timings = chunk["timings"]
        except httpx.TransportError as exc:
            raise UpstreamError(f"stream from {self.base_url} failed: {exc!r}") from None
        return Completion(
            text="".join(parts),
            reasoning="".join(reasoning),
            finish_reason=finish,
            usage=usage,
            timings=timings,
            ttft_s=ttft,
            elapsed_s=time.perf_counter() - start,
            model=model,
        )
