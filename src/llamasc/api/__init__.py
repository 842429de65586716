"""llamasc as a library: load a GGUF into a llama-server child, generate, stream, close.

::

    with llamasc.load("model.gguf", flags="-c 4096") as model:      # blocking, thread-safe
        for piece in model.generate_stream("def fib(n):", max_tokens=64): ...
        reply = model.chat("Hi", max_tokens=32)                       # a Completion
    async with llamasc.aload("model.gguf") as m:                      # the same, async
        async for piece in m.chat_stream([{"role": "user", "content": "Hi"}]): ...
    model = llamasc.connect("http://gpu-box:8402", model="qwen3", flags="--top-k 20")

The child is started by :mod:`llamasc.process` (environment scrub, readiness from its log,
dies with us) with flags checked by the operator :class:`~llamasc.flags.FlagPolicy`; the
requests go through :class:`llamasc.client.ChatClient`, the client bench and eval use.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Generator, Mapping
from types import TracebackType
from typing import Any

from llamasc.api._async import AsyncModel, Messages, sampling
from llamasc.api._launch import Flags, open_local, open_remote
from llamasc.api._sync import Model, Stream
from llamasc.flags import FlagPolicy


def load(
    path_or_model_id: str | os.PathLike[str],
    *,
    flags: Flags = "",
    binary: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60.0,
    port: int | None = None,
    policy: FlagPolicy | None = None,
    stop_grace: float = 5.0,
    timeout: float = 600.0,
) -> Model:
    """Start llama-server for a GGUF file (or a configured model id) and wait until ready.

    ``flags`` (a string or a list) are checked with the operator policy (or ``policy``):
    one :class:`~llamasc.errors.FlagError` lists every problem. ``binary``: the
    llama-server to run (default: as ``llamasc serve`` finds it). ``env`` adds variables to
    the child's scrubbed environment. ``port``: default a free loopback port. Raises
    :class:`~llamasc.errors.SpawnError` (exit code, stderr tail) if it dies while loading,
    :class:`~llamasc.errors.ReadinessTimeoutError` after ``ready_timeout`` seconds.
    ``close()`` sends SIGTERM and, after ``stop_grace`` seconds, SIGKILL.
    """

    async def opener() -> AsyncModel:
        return await open_local(
            path_or_model_id,
            flags=flags,
            binary=binary,
            env=env,
            ready_timeout=ready_timeout,
            port=port,
            policy=policy,
            stop_grace=stop_grace,
            timeout=timeout,
        )

    return Model.open(opener)


class Loading(Awaitable[AsyncModel]):
    """What :func:`aload` returns: ``await`` it, or ``async with`` it (closed at the end)."""

    def __init__(self, opening: Awaitable[AsyncModel]) -> None:
        self._opening = opening
        self._model: AsyncModel | None = None

    def __await__(self) -> Generator[Any, None, AsyncModel]:
        return self._opening.__await__()

    async def __aenter__(self) -> AsyncModel:
        self._model = await self._opening
        return self._model

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._model is not None:
            await self._model.aclose()


def aload(
    path_or_model_id: str | os.PathLike[str],
    *,
    flags: Flags = "",
    binary: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60.0,
    port: int | None = None,
    policy: FlagPolicy | None = None,
    stop_grace: float = 5.0,
    timeout: float = 600.0,
) -> Loading:
    """:func:`load`, async: ``model = await aload(...)`` or ``async with aload(...) as m``.

    The model belongs to the running event loop; on Linux the child's parent-death signal
    is tied to the loop's thread, so keep the loop alive as long as the model."""
    return Loading(
        open_local(
            path_or_model_id,
            flags=flags,
            binary=binary,
            env=env,
            ready_timeout=ready_timeout,
            port=port,
            policy=policy,
            stop_grace=stop_grace,
            timeout=timeout,
        )
    )


def connect(
    url: str,
    *,
    model: str | None = None,
    flags: Flags | None = None,
    api_key: str | None = None,
    timeout: float = 600.0,
) -> Model:
    """The same API against a llamasc daemon (``flags`` travel as ``X-Agent-Flags`` and are
    checked there) or any OpenAI-compatible server. Nothing is started; ``close()`` only
    closes connections."""

    async def opener() -> AsyncModel:
        return open_remote(url, model=model, flags=flags, api_key=api_key, timeout=timeout)

    return Model.open(opener)


def aconnect(
    url: str,
    *,
    model: str | None = None,
    flags: Flags | None = None,
    api_key: str | None = None,
    timeout: float = 600.0,
) -> AsyncModel:
    """:func:`connect`, async (use it as ``async with``, or ``await m.aclose()``)."""
    return open_remote(url, model=model, flags=flags, api_key=api_key, timeout=timeout)


__all__ = [
    "AsyncModel",
    "Loading",
    "Messages",
    "Model",
    "Stream",
    "aconnect",
    "aload",
    "connect",
    "load",
    "sampling",
]
