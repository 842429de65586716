"""Reading what a client sent: the body (bounded), the model id, the flags header."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Receive

from llamasc.errors import BodyTooLargeError, RequestError


def _too_large(limit: int) -> BodyTooLargeError:
    return BodyTooLargeError(f"request body is larger than the limit of {limit} bytes")


async def read_body(receive: Receive, limit: int, declared: bytes | None) -> bytes:
    """The whole request body, refused with 413 as soon as it is known to exceed ``limit``.

    A declared Content-Length is checked first, so an oversized upload is refused before any
    of it is read; chunked bodies are counted as they arrive.
    """
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError("Content-Length is not a number") from None
        if size > limit:
            raise _too_large(limit)
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    parts = [body]
    total = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError("client disconnected while sending the body")
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def model_from_body(body: bytes) -> str:
    """The ``model`` of a JSON request body, or a RequestError saying what is wrong."""
    if not body.strip():
        raise RequestError(
            'empty request body: send a JSON object with "model" (or the X-Model-Id header)'
        )
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RequestError(f"request body is not valid JSON: {reason}") from None
    if not isinstance(data, dict):
        raise RequestError(f"request body must be a JSON object, got {type(data).__name__}")
    model = data.get("model")
    if model is None:
        raise RequestError('no model given: set "model" in the body or the X-Model-Id header')
    if not isinstance(model, str) or not model.strip():
        raise RequestError(f'"model" must be a non-empty string, got {model!r}'[:300])
    return model.strip()


def header_text(value: bytes, name: str) -> str:
    """A header value as text (UTF-8, as clients send non-ASCII), stripped."""
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise RequestError(f"{name} header is not valid UTF-8") from None


__all__ = ["header_text", "model_from_body", "read_body"]
