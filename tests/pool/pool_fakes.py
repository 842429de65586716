"""An in-process launcher for Pool tests: records every child, knows which are alive."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from free_ports import free_port_block
from llamasc.errors import SpawnError
from llamasc.process.spec import LaunchSpec

_pids = itertools.count(100_000)


class FakeChild:
    """A 'llama-server' that is ready at once and lives until stopped or crashed."""

    def __init__(self, spec: LaunchSpec, world: FakeLauncher) -> None:
        self.spec = spec
        self.world = world
        self.pid = next(_pids)
        self.port = spec.port
        self.base_url = spec.base_url
        self.create_time = time.time()
        self.healthy = True
        self.health_checks = 0
        self.stop_calls = 0
        self._code: int | None = None
        self._exited = asyncio.Event()

    @property
    def returncode(self) -> int | None:
        return self._code

    def tail(self, n: int = 50) -> list[str]:
        return [f"fake line {i} of {self.pid}" for i in range(3)][-n:]

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._code is not None
        return self._code

    async def check_health(self, timeout: float = 2.0) -> bool:
        self.health_checks += 1
        return self.healthy and self._code is None

    async def stop(self, grace: float = 5.0) -> int | None:
        self.stop_calls += 1
        self.exit(-15)
        return self._code

    def exit(self, code: int) -> None:
        """The process ends (crash or stop)."""
        if self._code is None:
            self._code = code
            self.world.live.discard(self)
            self._exited.set()


class FakeLauncher:
    """Records launches; ``gate`` holds every start until set; ``fail`` makes starts fail."""

    def __init__(self) -> None:
        self.specs: list[LaunchSpec] = []
        self.children: list[FakeChild] = []
        self.live: set[FakeChild] = set()
        self.max_live = 0
        self.cancelled = 0
        self.gate: asyncio.Event | None = None
        self.fail: Callable[[LaunchSpec], bool] = lambda spec: False

    async def __call__(self, spec: LaunchSpec, *, ready_timeout: float) -> FakeChild:
        self.specs.append(spec)
        child = FakeChild(spec, self)
        self.children.append(child)
        assert all(c.port != spec.port for c in self.live), "port handed out twice"
        self.live.add(child)
        self.max_live = max(self.max_live, len(self.live))
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled += 1
            child.exit(-9)
            raise
        if self.fail(spec):
            child.exit(1)
            raise SpawnError("llama-server exited with code 1 before it was ready", exit_code=1)
        return child

    def for_port(self, port: int) -> FakeChild:
        return next(c for c in self.live if c.port == port)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition, giving the event loop turns; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def free_block(n: int) -> tuple[int, int]:
    """n consecutive ports, free now, below the ephemeral range."""
    return free_port_block(n)
