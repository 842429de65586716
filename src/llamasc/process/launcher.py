"""The protocol of running one llama-server: how to start it, and the handle it gives back.

:meth:`llamasc.process.LlamaServer.start` is the :class:`Launcher` and a
:class:`~llamasc.process.LlamaServer` the :class:`ServerHandle`: the daemon's pool uses
them (``pool/sidecar.py`` imports both under these names), so do ``llamasc.load`` and
``llamasc bench --host localhost``; tests pass recording fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from llamasc.process.spec import LaunchSpec


class ServerHandle(Protocol):
    """A running llama-server, ready to serve (what ``LlamaServer.start`` returns)."""

    @property
    def pid(self) -> int: ...
    @property
    def base_url(self) -> str: ...
    @property
    def create_time(self) -> float: ...
    @property
    def returncode(self) -> int | None: ...
    def tail(self, n: int = 50) -> list[str]: ...
    async def wait(self) -> int: ...
    async def check_health(self, timeout: float = 2.0) -> bool: ...  # noqa: ASYNC109
    async def stop(self, grace: float = 5.0) -> int | None: ...


class Launcher(Protocol):
    """Spawn a llama-server and wait until it is ready (``LlamaServer.start``).

    Raises SpawnError or ReadinessTimeoutError; when cancelled it must not leave the child
    running: the pool frees the child's port as soon as the launcher returns.
    """

    def __call__(self, spec: LaunchSpec, *, ready_timeout: float) -> Awaitable[ServerHandle]: ...


__all__ = ["Launcher", "ServerHandle"]
