"""The daemon's outermost layer: checks every request must pass, and the last resort.

* two ``Authorization`` headers are refused (400) on every route: proxies and frameworks
  disagree on which one counts, so no rule is safe but refusing;
* the CORS policy of :mod:`llamasc.server.cors` (403 for unlisted web page origins);
* an exception that escapes a handler before the answer started becomes an OpenAI-shaped
  500 ``internal_error`` (its traceback logged once), never uvicorn's plain-text 500;
* a request cancelled because the daemon is shutting down (a waiter released at once, or
  an answer still not started when the grace ran out) gets 503 ``shutting_down``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llamasc.errors import LlamascError, RequestError, ShuttingDownError
from llamasc.server.cors import CorsPolicy
from llamasc.server.envelope import send_error

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error in llamasc (the daemon's log has the details)"


class Guard:
    """Wraps the app; cheap when there is nothing to refuse (one pass over the headers)."""

    def __init__(
        self, app: ASGIApp, cors: CorsPolicy, draining: Callable[[], bool] = lambda: False
    ) -> None:
        self.app = app
        self.cors = cors
        self.draining = draining
        self.cors_app = cors.middleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        auths = 0
        origin = host = ctype = clen = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auths += 1
            elif name == b"origin":
                origin = value
            elif name == b"host":
                host = value
            elif name == b"content-type":
                ctype = value
            elif name == b"content-length":
                clen = value
        if auths > 1:
            await send_error(
                send, RequestError("more than one Authorization header: send exactly one")
            )
            return
        app = self.app
        if origin is not None:
            text = origin.decode("latin-1")
            refused = self.cors.refusal(
                text,
                host.decode("latin-1") if host else "",
                scope["method"],
                ctype.decode("latin-1") if ctype is not None else None,
                clen.decode("latin-1") if clen is not None else None,
            )
            if refused is not None:
                log.info("refused %s %s from origin %r: %s", scope["method"], scope["path"],
                         text[:200], refused.message)  # fmt: skip
                await send_error(send, refused)
                return
            if self.cors.listed(text):
                app = self.cors_app
        await self._last_resort(app, scope, receive, send)

    async def _last_resort(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, receive, tracking)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if started or not self.draining() or task is None:
                raise
            task.uncancel()
            await send_error(send, ShuttingDownError("llamasc is shutting down"))
        except Exception:
            if started:  # too late for an answer: uvicorn logs it and cuts the connection
                raise
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            await send_error(send, LlamascError(INTERNAL_MESSAGE))


__all__ = ["INTERNAL_MESSAGE", "Guard"]
