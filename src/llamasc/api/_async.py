"""The async model: one llama-server child of our own (``aload``) or a remote endpoint
(``aconnect``), with ``generate``/``chat`` and their streaming forms."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from llamasc.client import ChatClient, Completion, TextStream
from llamasc.errors import (
    AuthError,
    CapacityError,
    FlagError,
    LlamascError,
    ModelClosedError,
    SidecarExitedError,
    UnknownModelError,
    UpstreamStatusError,
)
from llamasc.process import LlamaServer
from llamasc.process._output import meaningful_line
from llamasc.process.server import TAIL_IN_ERRORS, describe_exit

log = logging.getLogger(__name__)

# A connection reset usually reaches us a moment before the child's exit is reaped.
EXIT_WAIT = 3.0

Messages = str | Sequence[dict[str, Any]]

# A llamasc daemon's error codes, raised as the same class it raised on its side.
_DAEMON_ERRORS: dict[str, type[LlamascError]] = {
    "invalid_flags": FlagError,
    "model_not_found": UnknownModelError,
    "invalid_api_key": AuthError,
    "capacity": CapacityError,
}


def sampling(
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    min_p: float | None = None,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
    repeat_penalty: float | None = None,
    presence_penalty: float | None = None,
    frequency_penalty: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The request body fields for the usual sampling parameters (None: server default).

    ``extra`` goes into the body as is (any other llama-server / OpenAI field)."""
    named: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "min_p": min_p,
        "seed": seed,
        "stop": [stop] if isinstance(stop, str) else (list(stop) if stop is not None else None),
        "repeat_penalty": repeat_penalty,
        "presence_penalty": presence_penalty,
        "frequency_penalty": frequency_penalty,
    }
    return {**{k: v for k, v in named.items() if v is not None}, **extra}


def as_messages(messages: Messages) -> list[dict[str, Any]]:
    """A bare string is one user message."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


class AsyncModel:
    """A model to generate with, from ``await llamasc.aload(...)`` or ``llamasc.aconnect(...)``.

    Safe to use from many tasks at once (llama-server's slots batch them). Use it on the
    event loop it was created on; for threads, use the blocking :class:`llamasc.Model`.
    ``error`` keeps the last error a request raised.
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        name: str,
        model: str | None = None,
        server: LlamaServer | None = None,
        stop_grace: float = 5.0,
    ) -> None:
        self.name = name
        self.model = model
        self.server = server
        self.error: LlamascError | None = None
        self._client = client
        self._stop_grace = stop_grace
        self._closed = False
        self._streams: weakref.WeakSet[TextStream] = weakref.WeakSet()
        client.set_error_hook(self._explain)

    # --- what it is ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint (``/v1`` below it) this model answers at."""
        return self._client.base_url

    @property
    def pid(self) -> int | None:
        """The llama-server child's process id (None for a connected model)."""
        return self.server.pid if self.server is not None else None

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        where = f"pid {self.pid}" if self.server is not None else "connected"
        return f"<{type(self).__name__} {self.name!r} at {self.base_url} ({where})>"

    # --- generating ----------------------------------------------------------------------

    async def generate(self, prompt: str, **params: Any) -> Completion:
        """Continue ``prompt`` (no chat template). ``params``: see :func:`sampling`."""
        self._check_usable()
        return await self._client.complete(prompt, model=self.model, **sampling(**params))

    async def chat(self, messages: Messages, **params: Any) -> Completion:
        """Answer a conversation (a list of ``{"role", "content"}``, or one user string)."""
        self._check_usable()
        msgs = as_messages(messages)
        return await self._client.chat(msgs, model=self.model, **sampling(**params))

    def generate_stream(self, prompt: str, **params: Any) -> TextStream:
        """Stream the continuation of ``prompt``: ``async for piece in ...``.

        Breaking out, ``aclose()`` or cancelling the task closes the HTTP stream, and
        llama-server stops generating. ``.completion`` has the whole answer at the end."""
        self._check_usable()
        stream = self._client.stream_complete(prompt, model=self.model, **sampling(**params))
        self._streams.add(stream)
        return stream

    def chat_stream(self, messages: Messages, **params: Any) -> TextStream:
        """Stream the answer to a conversation: ``async for piece in ...`` (see above)."""
        self._check_usable()
        msgs = as_messages(messages)
        stream = self._client.stream_chat(msgs, model=self.model, **sampling(**params))
        self._streams.add(stream)
        return stream

    # --- ending --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connections and stop the child (SIGTERM, then SIGKILL after the grace
        period); idempotent."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):  # streams still open end now, not at loop exit
            with contextlib.suppress(Exception):  # one another task is reading right now
                await stream.aclose()
        await self._client.aclose()
        if self.server is not None:
            await self.server.stop(self._stop_grace)

    async def __aenter__(self) -> AsyncModel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- errors --------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise ModelClosedError(f"model {self.name!r} is closed")
        if self.server is not None and self.server.returncode is not None:
            raise self._record(self._exited_error("before this request"))

    def _exited_error(self, when: str) -> SidecarExitedError:
        assert self.server is not None
        rc = self.server.returncode
        tail = self.server.tail(TAIL_IN_ERRORS)
        last = meaningful_line(tail) or "(no output)"
        return SidecarExitedError(
            f"llama-server for {self.name} (pid {self.server.pid}) {describe_exit(rc)} "
            f"{when}: {last}",
            exit_code=rc,
            stderr_tail=tail,
        )

    def _record(self, err: LlamascError) -> LlamascError:
        self.error = err
        return err

    async def _explain(self, err: LlamascError) -> LlamascError:
        """Turn a request's error into the one to raise: a dead child says so, a daemon's
        envelope becomes its own error class."""
        if isinstance(err, UpstreamStatusError):
            cls = _DAEMON_ERRORS.get(err.upstream_code or "")
            if cls is not None and self.server is None:
                return self._record(cls(err.upstream_message, details=err.details))
            return self._record(err)
        server = self.server
        if server is not None and not self._closed:
            if server.returncode is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(EXIT_WAIT):
                        await server.wait()
            if server.returncode is not None:
                return self._record(self._exited_error("while serving a request"))
        return self._record(err)


__all__ = ["AsyncModel", "Messages", "as_messages", "sampling"]
