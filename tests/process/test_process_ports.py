"""The one free-port pick and lost-port retry every launcher uses (pool, library, bench)."""

from __future__ import annotations

import random
import socket

import pytest

from llamasc.errors import SpawnError
from llamasc.process.ports import PORT_RANGE, pick_free_port, port_is_free, retry_lost_port

LOST = SpawnError("llama-server exited", stderr_tail=["couldn't bind HTTP server socket"])


def test_the_pick_skips_busy_ports_and_stays_below_the_ephemeral_range() -> None:
    busy = set(range(PORT_RANGE[0], PORT_RANGE[0] + 5000))
    port = pick_free_port(lambda p: p not in busy, rng=random.Random(1))
    assert PORT_RANGE[0] <= port < PORT_RANGE[1]
    assert port not in busy
    assert PORT_RANGE[1] <= 32768  # Linux's ephemeral range starts there


def test_no_free_port_is_a_spawn_error_naming_the_host() -> None:
    with pytest.raises(SpawnError, match="no free port found on gpu-box after 3 tries"):
        pick_free_port(lambda _p: False, where="gpu-box", tries=3)


def test_the_default_check_is_a_real_bind() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert not port_is_free(taken)
        with pytest.raises(SpawnError):
            pick_free_port(port_range=(taken, taken + 1), tries=3)


@pytest.mark.anyio
async def test_a_lost_port_starts_again_on_another_at_most_twice() -> None:
    tried: list[int] = []

    async def start(port: int) -> int:
        tried.append(port)
        raise LOST

    moves = iter([20001, 20002, 20003])
    with pytest.raises(SpawnError, match="exited"):
        await retry_lost_port(start, 20000, lambda _old: next(moves))
    assert tried == [20000, 20001, 20002]


@pytest.mark.anyio
async def test_the_retry_returns_the_first_start_that_works() -> None:
    async def start(port: int) -> str:
        if port == 20000:
            raise LOST
        return f"up on {port}"

    assert await retry_lost_port(start, 20000, lambda old: old + 7) == "up on 20007"


@pytest.mark.anyio
async def test_any_other_failure_is_not_retried() -> None:
    tried: list[int] = []

    async def start(port: int) -> None:
        tried.append(port)
        raise SpawnError("llama-server exited with code 1: bad model")

    with pytest.raises(SpawnError, match="bad model"):
        await retry_lost_port(start, 20000, lambda old: old + 1)
    assert tried == [20000]
