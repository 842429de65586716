"""A private event loop in a daemon thread, for the blocking API.

Not anyio's blocking portal: its loop thread is a non-daemon executor worker that the
interpreter joins at exit, so a program that forgot ``model.close()`` would hang instead of
exiting (and having its child stopped by the ``atexit`` hook).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from llamasc.errors import ModelClosedError

P = ParamSpec("P")
T = TypeVar("T")

STOP_WAIT = 10.0
CANCEL_WAIT = 5.0


class Portal:
    """Runs coroutines on its own loop thread for callers in any other thread."""

    def __init__(self, name: str = "llamasc-model") -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the loop and wait for its result.

        If the waiting thread is interrupted (Ctrl-C), the coroutine is cancelled and
        awaited, so nothing keeps running behind the caller's back.
        """
        if self._closed:
            raise ModelClosedError("this model is closed")
        if threading.current_thread() is self._thread:
            raise RuntimeError("Portal.call() from its own loop thread would deadlock")

        async def run() -> T:
            return await fn(*args, **kwargs)

        fut = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return fut.result()
        except BaseException:
            if not fut.done():
                fut.cancel()
                concurrent.futures.wait([fut], timeout=CANCEL_WAIT)
            raise

    def stop(self) -> None:
        """Stop the loop and join its thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(STOP_WAIT)


__all__ = ["Portal"]
