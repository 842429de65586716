"""``send_loading_state``: a streaming chat request that waits for its model to start is told so.

For a model with ``send_loading_state = true``, a streaming chat completion whose sidecar is
not up yet gets its response (200, ``text/event-stream``) at once, then one
``reasoning_content`` delta a second while the start runs (``loading smol (241 MiB)... 1 s...
2 s...``), then the real answer stream from llama-server. Chat UIs show the reasoning text, so
they do not look hung. A start that fails ends the stream with an error event (the status is
already sent). Off by default: a client that does not expect the extra deltas never sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from starlette.types import Message, Send

from llamasc.errors import LlamascError, UpstreamError
from llamasc.server.envelope import sse_error_event

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
INTERVAL = 1.0
_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def wants_loading_state(pool: Any, path: str, model: str, flags: Any, body: bytes) -> str | None:
    """What the request waits for (see ``Pool.loading_state``) if it is a streaming chat for a
    model with the setting whose sidecar is not up; else None. Cheap when the setting is off."""
    if path not in CHAT_PATHS:
        return None
    probe = getattr(pool, "loading_state", None)  # the real pool (test fakes have none)
    what = probe(model, flags) if probe is not None else None
    if what is None:
        return None
    try:
        streaming = json.loads(body).get("stream") is True
    except (ValueError, AttributeError):
        return None
    return what if streaming else None


class LoadingStream:
    """The stream's start and its loading deltas; then the relay's stream through :meth:`send`."""

    def __init__(self, what: str, model: str, send: Send) -> None:
        self.what = what
        self.model = model
        self._send = send
        self._ticker: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        self._upstream_status = 200
        self._error_body = b""
        self.id = f"chatcmpl-loading-{int(self._started * 1000)}"

    async def start(self) -> None:
        """Send the response start and the first delta, then one a second (a task)."""
        await self._send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await self._delta(f"loading {self.what}...", role=True)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def ready(self) -> None:
        """The sidecar is ours: stop the deltas, say how long it took."""
        await self._stop_ticker()
        await self._delta(f" ready in {time.monotonic() - self._started:.1f} s\n")

    async def failed(self, exc: LlamascError) -> None:
        """The start failed (or the request was refused): an error event ends the stream."""
        await self._stop_ticker()
        await self._send({"type": "http.response.body", "body": sse_error_event(exc),
                          "more_body": False})  # fmt: skip

    async def send(self, message: Message) -> None:
        """The relay's messages: its response start is already sent; an upstream error body
        (not a stream) becomes an error event."""
        if message["type"] == "http.response.start":
            self._upstream_status = int(message["status"])
            return
        if self._upstream_status == 200:
            await self._send(message)
            return
        self._error_body += message.get("body", b"")
        if not message.get("more_body", False):
            text = self._error_body.decode("utf-8", "replace")[:500]
            err = UpstreamError(f"llama-server answered HTTP {self._upstream_status}: {text}")
            await self._send({"type": "http.response.body", "body": sse_error_event(err),
                              "more_body": False})  # fmt: skip

    async def _tick(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(INTERVAL)
            n += 1
            await self._delta(f" {n} s...")

    async def _stop_ticker(self) -> None:
        if self._ticker is None:
            return
        if self._ticker.done():
            self._ticker.result()  # a send that failed: the client left
            return
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        if not self._ticker.cancelled():
            self._ticker.result()

    async def _delta(self, text: str, *, role: bool = False) -> None:
        delta: dict[str, str] = {"role": "assistant"} if role else {}
        delta["reasoning_content"] = text
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        data = b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
        await self._send({"type": "http.response.body", "body": data, "more_body": True})


__all__ = ["CHAT_PATHS", "LoadingStream", "wants_loading_state"]
