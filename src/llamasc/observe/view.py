"""A client's picture of a daemon, folded from ``/api/events`` (what ``llamasc top`` shows).

Pure: feed it ``(type, data)`` pairs in the order they arrive, read ``sidecars`` and
``waiting``. An SSE parser for the byte lines of the stream is included.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LiveView:
    sidecars: dict[str, dict[str, Any]] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    last_request: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> event
    dropped: int = 0
    connected: bool = False

    def apply(self, type: str, data: dict[str, Any]) -> None:
        if type == "state":
            self.connected = True
            self.sidecars = {s["hash"]: dict(s) for s in data.get("sidecars", [])}
            self.waiting = dict(data.get("waiting") or {})
            self.in_flight = dict(data.get("in_flight") or {})
        elif type == "sidecar":
            key = data.get("hash", "")
            if data.get("state") == "exited":
                self.sidecars.pop(key, None)
            else:
                entry = self.sidecars.setdefault(
                    key,
                    {
                        "hash": key,
                        "model": data.get("model", ""),
                        "flags": data.get("flags", []),
                        "in_flight": 0,
                        "requests_served": 0,
                    },
                )
                entry["state"] = data.get("state")
        elif type == "queue":
            self.waiting = dict(data.get("waiting") or {})
            self.in_flight = dict(data.get("in_flight") or {})
        elif type == "request_finished":
            self.last_request[str(data.get("model"))] = data
            for s in self.sidecars.values():
                if s["hash"][:8] == data.get("sidecar"):
                    s["requests_served"] = int(s.get("requests_served") or 0) + 1
                    s["last_ttft"] = data.get("ttft")
                    s["last_tps"] = data.get("tokens_per_second")
        elif type == "dropped":
            self.dropped += int(data.get("count") or 0)


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event type, JSON data)`` for each event in an SSE stream's lines."""
    type_, data = "message", ""
    for line in lines:
        if not line:
            if data:
                with contextlib.suppress(ValueError):
                    yield type_, json.loads(data)
            type_, data = "message", ""
        elif line.startswith("event:"):
            type_ = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


__all__ = ["LiveView", "parse_sse"]
