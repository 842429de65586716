"""The daemon's ASGI application: the lean proxy for inference routes, Starlette for the rest.

Inference POSTs are dispatched before Starlette's middleware and router ever run, since every
microsecond there is paid on every request. Everything else (health, models, sidecars, and
404/405 for unknown routes) goes through Starlette, behind the API-key check.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llamasc.config import ModelCatalog
from llamasc.config.settings import Settings
from llamasc.errors import AuthError, LlamascError, NotFoundError, RequestError
from llamasc.flags import FlagPolicy
from llamasc.server._types import PoolLike
from llamasc.server.admin import Admin
from llamasc.server.envelope import MethodNotAllowedError, error_bytes, send_error
from llamasc.server.flaggate import FlagGate
from llamasc.server.observing import Observing, is_public
from llamasc.server.relay import AUTH_MESSAGE, PROXY_PATHS, Proxy
from llamasc.server.state import DaemonState, LlamaServerInfo

log = logging.getLogger(__name__)

_OPEN_PATHS = frozenset({"/health"})


class _RequireKey:
    """Every admin route but /health needs the API key, when one is set."""

    def __init__(self, app: ASGIApp, state: DaemonState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.state.auth_required
            and scope["path"] not in _OPEN_PATHS
            and not is_public(scope["path"], scope["query_string"], self.state)
        ):
            auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if not self.state.authorized(auth):
                await send_error(send, AuthError(AUTH_MESSAGE))
                return
        await self.app(scope, receive, send)


def _error_response(err: LlamascError) -> Response:
    body = error_bytes(err)
    response = Response(body, status_code=err.http_status, media_type="application/json")
    for name, value in err.headers().items():
        response.headers[name] = value
    return response


async def _on_llamasc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LlamascError)
    return _error_response(exc)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err: LlamascError
    if exc.status_code == 404:
        err = NotFoundError(f"no route {request.method} {request.url.path}")
    elif exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        err = MethodNotAllowedError(
            f"{request.url.path} does not accept {request.method}", allow=allow
        )
    else:
        err = RequestError(exc.detail)
    return _error_response(err)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed: %r", request.method, request.url.path, exc)
    return _error_response(LlamascError(f"internal error: {type(exc).__name__}"))


class LlamascApp(Starlette):
    """Starlette for the admin routes, with the inference routes short-circuited in front."""

    def __init__(self, state: DaemonState) -> None:
        self.llamasc = state
        self._proxy = Proxy(state)

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            await state.startup()
            try:
                yield
            finally:
                await state.shutdown()

        super().__init__(
            routes=[*Admin(state).routes(), *Observing(state).routes()],
            middleware=[Middleware(_RequireKey, state=state)],
            exception_handlers={
                LlamascError: _on_llamasc_error,
                HTTPException: _on_http_exception,
                Exception: _on_unexpected,
            },
            lifespan=lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in PROXY_PATHS:
            await self._proxy(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    pool: PoolLike,
    *,
    catalog: ModelCatalog,
    llama_server: LlamaServerInfo | None = None,
    policy: FlagPolicy | None = None,
) -> LlamascApp:
    """The daemon's ASGI app over ``pool`` (injectable, so tests can hand it a fake).

    ``policy`` is what ``X-Agent-Flags`` is checked against (default: untrusted clients).
    Running it under an ASGI server with lifespan starts the pool and, at shutdown, stops it.
    """
    state = DaemonState(
        settings, pool, catalog, FlagGate(policy), llama_server or LlamaServerInfo()
    )
    return LlamascApp(state)


__all__ = ["LlamascApp", "create_app"]
