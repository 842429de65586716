"""Anthropic Messages streams that open the way the SDKs expect.

llama-server sometimes leaves out a stream's opening ``message_start`` event: it is tied to
the first partial result, and when the first sampled token is not yet a whole UTF-8
character (an emoji split over two tokens) that result carries no text and is not sent.
Measured with the pinned build and SmolLM2 at its default sampling, 4 of 40 streams of
"Say hello." began with ``content_block_start``. The Anthropic SDKs, and so Claude Code,
cannot read such a stream (the Python SDK ends it with no final message). The relay puts a
``message_start`` in front of a stream whose first event is one that must follow it (a
content block, ``message_delta`` or ``message_stop``); every other stream passes byte for
byte.
"""

from __future__ import annotations

import json
import secrets

MESSAGES_PATH = "/v1/messages"
FIRST_EVENT_LIMIT = 64 * 1024  # past this without an event's end, let the bytes go as they are
_COME_AFTER_START = frozenset(
    ("content_block_start", "content_block_delta", "content_block_stop", "message_delta",
     "message_stop")
)  # fmt: skip


def message_start_event(model: str) -> bytes:
    """The event llama-server sends first, for ``model`` (usage unknown here: 0)."""
    message: dict[str, object] = {
        "id": "msg_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    data = json.dumps({"type": "message_start", "message": message}, separators=(",", ":"))
    return b"event: message_start\ndata: " + data.encode() + b"\n\n"


class MessageStart:
    """Holds a stream's first bytes back until its first event is whole, then releases them,
    with a ``message_start`` in front when the stream did not open with one."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._held = b""
        self._released = False

    def feed(self, chunk: bytes) -> bytes:
        """What may go to the client now, given the next chunk from llama-server."""
        if self._released:
            return chunk
        self._held += chunk
        if b"\n\n" not in self._held and len(self._held) < FIRST_EVENT_LIMIT:
            return b""
        return self.flush()

    def flush(self) -> bytes:
        """Whatever is held (at the stream's end, or before an error event)."""
        if self._released:
            return b""
        self._released = True
        held, self._held = self._held, b""
        kind = event_type(held.partition(b"\n\n")[0])
        if kind not in _COME_AFTER_START:
            return held
        return message_start_event(self.model) + held


def event_type(event: bytes) -> str | None:
    """An SSE event's type: its ``event:`` line, else its data's ``type``; None if neither."""
    for line in event.splitlines():
        if line.startswith(b"event:"):
            return line[6:].strip().decode("utf-8", "replace")
        if line.startswith(b"data:"):
            try:
                data = json.loads(line[5:])
            except ValueError:
                return None
            kind = data.get("type") if isinstance(data, dict) else None
            return kind if isinstance(kind, str) else None
    return None


__all__ = ["MESSAGES_PATH", "MessageStart", "event_type", "message_start_event"]
