"""The event bus behind ``GET /api/events``: publish once, every subscriber gets a copy.

A slow subscriber never slows the publisher: each has a bounded buffer, the oldest events are
dropped when it is full, and the subscriber is told how many with a ``dropped`` event before the
next one it reads. Publishing with nobody subscribed costs one truth test, so the daemon can
publish on the request path.

Everything runs on the event loop's thread; :meth:`EventBus.publish_threadsafe` is for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_BUFFER = 1000


class Event:
    """One event: a type, a JSON-able payload, a sequence number and a wall-clock time."""

    __slots__ = ("data", "id", "time", "type")

    def __init__(self, id: int, type: str, data: dict[str, Any]) -> None:
        self.id = id
        self.type = type
        self.data = data
        self.time = time.time()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "time": self.time, **self.data}

    def sse(self) -> bytes:
        """The event in server-sent-events framing."""
        body = json.dumps(self.to_dict(), separators=(",", ":"), default=str)
        return f"id: {self.id}\nevent: {self.type}\ndata: {body}\n\n".encode()


class Subscription:
    """One subscriber's bounded buffer (the oldest event goes when it is full)."""

    def __init__(self, bus: EventBus, size: int, types: frozenset[str] | None) -> None:
        self._bus = bus
        self.types = types
        self.buffer: deque[Event] = deque(maxlen=size)
        self.dropped = 0
        self._wake = asyncio.Event()
        self.closed = False

    def put(self, event: Event) -> None:
        if self.types is not None and event.type not in self.types:
            return
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1
        self.buffer.append(event)
        self._wake.set()

    async def get(self) -> list[Event]:
        """Wait for events; a ``dropped`` event leads when some were lost since the last call."""
        while not self.buffer and not self.closed:
            self._wake.clear()
            await self._wake.wait()
        out: list[Event] = []
        if self.dropped:
            out.append(Event(0, "dropped", {"count": self.dropped}))
            self.dropped = 0
        out.extend(self.buffer)
        self.buffer.clear()
        return out

    def close(self) -> None:
        self.closed = True
        self._wake.set()
        self._bus._subs.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of daemon events to any number of bounded subscribers."""

    def __init__(self, buffer: int = DEFAULT_BUFFER) -> None:
        self.buffer = buffer
        self._subs: set[Subscription] = set()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def active(self) -> bool:
        """Anyone listening? (Callers may skip building an event's payload when not.)"""
        return bool(self._subs)

    def subscribe(
        self, *, size: int | None = None, types: frozenset[str] | None = None
    ) -> Subscription:
        """A new subscription (use it as a context manager so it is closed)."""
        self._loop = asyncio.get_running_loop()
        sub = Subscription(self, size or self.buffer, types)
        self._subs.add(sub)
        return sub

    def publish(self, type: str, **data: Any) -> None:
        """Send an event to every subscriber (on the event loop's thread)."""
        if not self._subs:
            return
        event = Event(next(self._ids), type, data)
        for sub in list(self._subs):
            sub.put(event)

    def publish_threadsafe(self, type: str, **data: Any) -> None:
        """:meth:`publish` from any thread."""
        loop = self._loop
        if not self._subs or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            loop.call_soon_threadsafe(lambda: self.publish(type, **data))

    async def stream(self, sub: Subscription, first: list[Event]) -> AsyncIterator[bytes]:
        """SSE bytes: ``first`` (the current state), then every event until closed."""
        for event in first:
            yield event.sse()
        while not sub.closed:
            for event in await sub.get():
                yield event.sse()

    def snapshot_event(self, type: str, **data: Any) -> Event:
        """An event for one subscriber only (the state a new client gets first)."""
        return Event(next(self._ids), type, data)


__all__ = ["DEFAULT_BUFFER", "Event", "EventBus", "Subscription"]
