"""Errors as OpenAI-shaped JSON envelopes, with a source tag like llama-swap's.

``{"error": {"message", "type", "code", "source"}}``: ``source`` is ``"llamasc"`` when the
daemon refused or failed, ``"upstream"`` when a llama-server child did. Errors that
llama-server itself answers (its own 4xx/5xx envelopes) are relayed unchanged, not wrapped.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from starlette.types import Send

from llamasc.errors import FlagError, LlamascError, RequestError, SidecarError

Source = Literal["llamasc", "upstream"]

_JSON = b"application/json"
# Whatever a message echoes, an error stays small (each echo is also cut at its source).
MESSAGE_LIMIT = 16 * 1024


class MethodNotAllowedError(RequestError):
    """A known route called with the wrong method (405, with ``Allow``)."""

    http_status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str = "") -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow} if self.allow else {}


def source_of(err: LlamascError) -> Source:
    """Whose fault: a child that failed to start or to answer is the upstream's."""
    return "upstream" if isinstance(err, SidecarError) else "llamasc"


def envelope(err: LlamascError, source: Source | None = None) -> dict[str, Any]:
    body = err.to_envelope()
    if isinstance(err, FlagError) and err.details:
        # many clients show only the message: put every problem in it, not just a count
        body["error"]["message"] = f"{err.message}: " + "; ".join(err.details)
    message = body["error"]["message"]
    if len(message) > MESSAGE_LIMIT:
        body["error"]["message"] = message[:MESSAGE_LIMIT] + f"... (cut, {len(message)} chars)"
    body["error"]["source"] = source or source_of(err)
    return body


def error_bytes(err: LlamascError, source: Source | None = None) -> bytes:
    return json.dumps(envelope(err, source), ensure_ascii=False).encode()


def error_headers(err: LlamascError, body_len: int) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", _JSON), (b"content-length", str(body_len).encode())]
    headers.extend((k.lower().encode(), v.encode()) for k, v in err.headers().items())
    return headers


async def send_error(send: Send, err: LlamascError, source: Source | None = None) -> None:
    """Answer a raw ASGI request with ``err``'s status and envelope."""
    body = error_bytes(err, source)
    await send(
        {
            "type": "http.response.start",
            "status": err.http_status,
            "headers": error_headers(err, len(body)),
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def sse_error_event(err: LlamascError, source: Source | None = None) -> bytes:
    """The last event of a stream whose upstream died: llama-server's own mid-stream form."""
    return b"data: " + error_bytes(err, source) + b"\n\n"


__all__ = [
    "MethodNotAllowedError",
    "Source",
    "envelope",
    "error_bytes",
    "error_headers",
    "send_error",
    "source_of",
    "sse_error_event",
]
