"""The response head waits for its body (one write), never longer than one loop turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llamasc.server._httpproto import _CoalescingTransport

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def wrap() -> tuple[_CoalescingTransport, RecordingTransport]:
    real = RecordingTransport()
    return _CoalescingTransport(real, asyncio.get_running_loop()), real  # type: ignore[arg-type]


async def test_head_and_body_sent_in_one_turn_leave_in_one_write() -> None:
    t, real = wrap()
    t.write(HEAD)
    t.write(b'{"ok":true}')
    assert real.writes == [HEAD + b'{"ok":true}']
    await asyncio.sleep(0)
    assert real.writes == [HEAD + b'{"ok":true}']


async def test_a_lone_head_leaves_at_the_end_of_the_turn() -> None:
    t, real = wrap()
    t.write(HEAD)
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [HEAD]
    t.write(b"data: 1\n\n")
    assert real.writes == [HEAD, b"data: 1\n\n"]


async def test_close_flushes_a_held_head_first_and_other_calls_pass_through() -> None:
    t, real = wrap()
    t.write(HEAD)
    t.close()
    assert real.writes == [HEAD]
    assert real.closed
    assert t.get_extra_info("peername") == "info:peername"
