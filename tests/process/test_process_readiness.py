"""The one readiness rule (process/readiness.py), with scripted answers: no processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from llamasc.process.readiness import Readiness, wait_ready

pytestmark = pytest.mark.anyio


def scripted(statuses: list[int | None]) -> tuple[list[float], object]:
    limits: list[float] = []
    answers: Iterator[int | None] = iter(statuses)

    async def probe(limit: float) -> int | None:
        limits.append(limit)
        return next(answers, None)

    return limits, probe


async def never_exited() -> bool:
    return False


async def test_ready_at_the_first_200() -> None:
    limits, probe = scripted([None, 503, 200])
    outcome = await wait_ready(
        exited=never_exited,
        probe=probe,
        timeout=10,
        first=0.001,
        most=0.002,  # type: ignore[arg-type]
    )
    assert outcome is Readiness.READY
    assert len(limits) == 3


async def test_a_200_that_is_not_ours_is_not_ready() -> None:
    """A port squatter answers 200 while our child has not bound the port."""
    confirms = iter([False, False, True])
    limits, probe = scripted([200, 200, 200])
    outcome = await wait_ready(
        exited=never_exited,
        probe=probe,  # type: ignore[arg-type]
        confirm=lambda: next(confirms),
        timeout=10,
        first=0.001,
        most=0.002,
    )
    assert outcome is Readiness.READY
    assert len(limits) == 3


async def test_an_exit_is_reported_before_any_further_probe() -> None:
    looks = iter([False, True])

    async def exited() -> bool:
        return next(looks)

    limits, probe = scripted([503, 200])
    outcome = await wait_ready(exited=exited, probe=probe, timeout=10, first=0.001, most=0.002)  # type: ignore[arg-type]
    assert outcome is Readiness.EXITED
    assert len(limits) == 1


async def test_the_deadline_ends_the_wait() -> None:
    _, probe = scripted([])
    outcome = await wait_ready(
        exited=never_exited,
        probe=probe,
        timeout=0.05,
        first=0.01,
        most=0.02,  # type: ignore[arg-type]
    )
    assert outcome is Readiness.TIMEOUT


async def test_a_wake_looks_again_at_once() -> None:
    """With a long delay, only the caller's wake can bring the second look before it."""
    wake = asyncio.Event()
    limits, probe = scripted([None, 200])

    async def poke() -> None:
        while not limits:
            await asyncio.sleep(0)
        wake.set()

    task = asyncio.ensure_future(poke())
    outcome = await asyncio.wait_for(
        wait_ready(exited=never_exited, probe=probe, wake=wake, timeout=60, first=30, most=30),  # type: ignore[arg-type]
        timeout=10,
    )
    await task
    assert outcome is Readiness.READY
