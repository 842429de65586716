"""The event bus: order, fan-out, and the bound that keeps a slow client from costing anything."""

from __future__ import annotations

import asyncio
import json

import pytest

from llamasc.observe.events import EventBus

pytestmark = pytest.mark.anyio


async def test_events_arrive_in_order_to_every_subscriber() -> None:
    bus = EventBus()
    with bus.subscribe() as a, bus.subscribe() as b:
        for i in range(5):
            bus.publish("tick", n=i)
        for sub in (a, b):
            got = await sub.get()
            assert [e.data["n"] for e in got] == [0, 1, 2, 3, 4]
            assert [e.id for e in got] == sorted(e.id for e in got)


async def test_publishing_with_nobody_listening_keeps_nothing() -> None:
    bus = EventBus()
    assert not bus.active
    bus.publish("tick", n=1)
    with bus.subscribe() as sub:
        bus.publish("tick", n=2)
        assert [e.data["n"] for e in await sub.get()] == [2]


async def test_a_slow_subscriber_loses_the_oldest_and_is_told_how_many() -> None:
    bus = EventBus(buffer=10)
    with bus.subscribe() as slow:
        for i in range(25):
            bus.publish("tick", n=i)
        got = await slow.get()
        assert got[0].type == "dropped"
        assert got[0].data == {"count": 15}
        assert [e.data["n"] for e in got[1:]] == list(range(15, 25))
        bus.publish("tick", n=99)  # after the report, no dropped event until it happens again
        again = await slow.get()
        assert [e.type for e in again] == ["tick"]


async def test_get_waits_for_the_next_event_and_close_releases_it() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    bus.publish("tick", n=1)
    assert [e.data["n"] for e in await asyncio.wait_for(waiter, 5)] == [1]
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    sub.close()
    assert await asyncio.wait_for(waiter, 5) == []
    assert not bus.active


async def test_sse_framing_carries_type_id_and_json() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        bus.publish("sidecar", state="ready", model="m")
        (event,) = await sub.get()
    text = event.sse().decode()
    assert text.endswith("\n\n")
    lines = text.strip().split("\n")
    assert lines[0] == f"id: {event.id}"
    assert lines[1] == "event: sidecar"
    data = json.loads(lines[2].removeprefix("data: "))
    assert data["state"] == "ready"
    assert data["model"] == "m"
    assert data["type"] == "sidecar"


async def test_publish_threadsafe_reaches_the_loop() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        await asyncio.to_thread(bus.publish_threadsafe, "log", line="hello")
        got = await asyncio.wait_for(sub.get(), 5)
        assert [e.data["line"] for e in got] == ["hello"]
