"""The blocking API: :class:`Model` and :class:`Stream`, an :class:`AsyncModel` driven on a
private event loop thread, so one model serves any number of threads at once."""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterator
from types import TracebackType
from typing import Any

from llamasc.api._async import AsyncModel, Messages
from llamasc.api._portal import Portal
from llamasc.client import Completion, TextStream
from llamasc.errors import LlamascError

log = logging.getLogger(__name__)

_open: weakref.WeakSet[Model] = weakref.WeakSet()
_open_lock = threading.Lock()


@atexit.register
def _close_forgotten() -> None:
    """A program that forgot ``close()`` still stops its children as it exits."""
    with _open_lock:
        models = list(_open)
    for model in models:
        with contextlib.suppress(Exception):
            model.close()


class Stream:
    """Iterator of the text pieces of one streamed answer; ``completion`` once done.

    ``break`` (or ``close()``, or leaving ``with``) closes the HTTP stream at once, and
    llama-server stops generating.
    """

    def __init__(self, portal: Portal, astream: TextStream) -> None:
        self._astream = astream
        # Not a method of self: a generator that refers to its Stream would keep it in a
        # cycle, and a `break` would not close the HTTP stream until the next GC.
        self._gen = _pieces(portal, astream)

    @property
    def completion(self) -> Completion | None:
        """The whole answer (finish reason, usage, timings), once the stream has ended."""
        return self._astream.completion

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()

    def collect(self) -> Completion:
        """Read the rest and return the whole answer."""
        for _ in self:
            pass
        assert self.completion is not None
        return self.completion

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _pieces(portal: Portal, astream: TextStream) -> Generator[str, None, None]:
    async def step() -> tuple[bool, str]:
        try:
            return True, await astream.__anext__()
        except StopAsyncIteration:
            return False, ""

    try:
        while True:
            more, piece = portal.call(step)
            if not more:
                return
            yield piece
    finally:
        if not portal.closed:
            portal.call(astream.aclose)


class Model:
    """A model to generate with, from ``llamasc.load(...)`` or ``llamasc.connect(...)``.

    Every method blocks; any number of threads may use one model at once. ``error`` keeps
    the last error a request raised. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, amodel: AsyncModel, portal: Portal) -> None:
        self._amodel = amodel
        self._portal = portal
        self._close_lock = threading.Lock()
        with _open_lock:
            _open.add(self)

    @classmethod
    def open(cls, opener: Callable[[], Awaitable[AsyncModel]]) -> Model:
        """Run ``opener`` on a new loop thread; the Model of the AsyncModel it returns."""
        portal = Portal()
        try:
            amodel = portal.call(opener)
        except BaseException:
            portal.stop()
            raise
        return cls(amodel, portal)

    # --- what it is ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._amodel.name

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint this model answers at (``/v1`` below it)."""
        return self._amodel.base_url

    @property
    def pid(self) -> int | None:
        """The llama-server child's process id (None for a connected model)."""
        return self._amodel.pid

    @property
    def error(self) -> LlamascError | None:
        """The last error a request raised (e.g. the child's exit), or None."""
        return self._amodel.error

    @property
    def closed(self) -> bool:
        return self._amodel.closed

    @property
    def aio(self) -> AsyncModel:
        """The underlying AsyncModel (only for use on this model's own loop thread)."""
        return self._amodel

    def __repr__(self) -> str:
        return repr(self._amodel).replace("<AsyncModel", "<Model", 1)

    # --- generating ----------------------------------------------------------------------

    def generate(self, prompt: str, **params: Any) -> Completion:
        """Continue ``prompt`` (no chat template); params: max_tokens, temperature, top_p,
        top_k, min_p, seed, stop, repeat_penalty, ... (see :func:`llamasc.api.sampling`)."""
        return self._portal.call(self._amodel.generate, prompt, **params)

    def chat(self, messages: Messages, **params: Any) -> Completion:
        """Answer a conversation (a list of ``{"role", "content"}``, or one user string)."""
        return self._portal.call(self._amodel.chat, messages, **params)

    def generate_stream(self, prompt: str, **params: Any) -> Stream:
        """Stream the continuation of ``prompt``, piece by piece."""
        return Stream(self._portal, self._call_sync(self._amodel.generate_stream, prompt, params))

    def chat_stream(self, messages: Messages, **params: Any) -> Stream:
        """Stream the answer to a conversation, piece by piece."""
        return Stream(self._portal, self._call_sync(self._amodel.chat_stream, messages, params))

    def _call_sync(
        self, fn: Callable[..., TextStream], first: Any, params: dict[str, Any]
    ) -> TextStream:
        async def make() -> TextStream:
            return fn(first, **params)

        return self._portal.call(make)

    # --- ending --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections, stop the child and the loop thread; idempotent."""
        with self._close_lock:
            if self._portal.closed:
                return
            try:
                self._portal.call(self._amodel.aclose)
            finally:
                self._portal.stop()
                with _open_lock:
                    _open.discard(self)

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["Model", "Stream"]
