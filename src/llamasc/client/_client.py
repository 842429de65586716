"""The client proper: chat and text completions (whole or streamed), /props, /v1/models,
/health."""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

import httpx

from llamasc.client._completion import Completion
from llamasc.client._stream import ErrorHook, Kind, TextStream, status_error
from llamasc.client._timings import Timings
from llamasc.errors import DaemonUnreachableError, LlamascError, UpstreamError

log = logging.getLogger(__name__)


def normalize_base_url(url: str) -> str:
    """``http://h:p``, ``http://h:p/``, ``http://h:p/v1`` all become ``http://h:p``."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if "://" not in url:
        url = "http://" + url
    return url


def _error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", body["error"]))
    return str(body)[:300]


class ChatClient:
    """An async client for one OpenAI-compatible endpoint. Use as ``async with``.

    ``on_error`` sees every error a request is about to raise and may return a better one
    (the library uses it to say that the llama-server child died, with its exit code).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        flags: str | None = None,
        timeout: float = 600.0,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_error: ErrorHook | None = None,
    ) -> None:
        self._on_error = on_error
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

    def set_error_hook(self, hook: ErrorHook | None) -> None:
        """Replace the ``on_error`` hook (see the class docstring)."""
        self._on_error = hook

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

    async def health_status(self) -> tuple[int, Any]:
        """``GET /health``: (status code, JSON body or None). DaemonUnreachableError if
        nothing answers."""
        try:
            resp = await self._client.get("/health")
        except httpx.TransportError as exc:
            raise DaemonUnreachableError(
                f"nothing answers at {self.base_url} ({type(exc).__name__})"
            ) from None
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, None

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

    async def _fail(self, err: LlamascError) -> LlamascError:
        return await self._on_error(err) if self._on_error is not None else err

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        stream: bool = False,
        extra_headers: dict[str, str] | None = None,
        **params: Any,
    ) -> Completion:
        """POST /v1/chat/completions. ``params`` go into the body (max_tokens, seed, ...).

        ``stream=True`` streams the answer (which gives ``ttft_s``) and returns it whole."""
        body = _body({"messages": messages}, model, params)
        if stream:
            return await self.stream_chat(
                messages, model=model, headers=extra_headers, **params
            ).collect()
        return await self._post("/v1/chat/completions", body, "chat", extra_headers)

    async def complete(
        self,
        prompt: str,
        *,
        model: str | None = None,
        extra_headers: dict[str, str] | None = None,
        **params: Any,
    ) -> Completion:
        """POST /v1/completions: continue ``prompt`` (no chat template)."""
        body = _body({"prompt": prompt}, model, params)
        return await self._post("/v1/completions", body, "text", extra_headers)

    def stream_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> TextStream:
        """Stream a chat completion: an async iterator of text pieces (see TextStream)."""
        body = _body({"messages": messages}, model, params, stream=True)
        return self._stream("/v1/chat/completions", body, "chat", headers)

    def stream_complete(
        self,
        prompt: str,
        *,
        model: str | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> TextStream:
        """Stream a text completion of ``prompt``: an async iterator of text pieces."""
        body = _body({"prompt": prompt}, model, params, stream=True)
        return self._stream("/v1/completions", body, "text", headers)

    def _stream(
        self, path: str, body: dict[str, Any], kind: Kind, headers: dict[str, str] | None
    ) -> TextStream:
        return TextStream(
            self._client, path, body, kind=kind, headers=headers, on_error=self._on_error
        )

    async def _post(
        self, path: str, body: dict[str, Any], kind: Kind, headers: dict[str, str] | None
    ) -> Completion:
        what = "chat completion" if kind == "chat" else "completion"
        start = time.perf_counter()
        try:
            resp = await self._client.post(path, json=body, headers=headers)
            if resp.status_code != 200:
                raise status_error(what, resp)
            data = resp.json()
        except httpx.TransportError as exc:
            err = UpstreamError(f"request to {self.base_url} failed: {exc!r}")
            raise await self._fail(err) from None
        except ValueError as exc:
            raise await self._fail(UpstreamError(f"{what}: invalid JSON: {exc}")) from None
        except LlamascError as exc:
            raise await self._fail(exc) from None
        elapsed = time.perf_counter() - start
        choice = (data.get("choices") or [{}])[0]
        if kind == "chat":
            message = choice.get("message") or {}
            text, reasoning = message.get("content") or "", message.get("reasoning_content")
        else:
            text, reasoning = choice.get("text") or "", None
        return Completion(
            text=text,
            reasoning=reasoning or "",
            finish_reason=choice.get("finish_reason"),
            usage=data.get("usage") or {},
            timings=Timings(data.get("timings") or {}),
            elapsed_s=elapsed,
            model=data.get("model"),
            raw=data,
        )


def _body(
    base: dict[str, Any], model: str | None, params: dict[str, Any], *, stream: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {**base, **params}
    if model is not None:
        body["model"] = model
    if stream:
        body["stream"] = True
    return body
