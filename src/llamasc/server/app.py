"""The daemon's ASGI application: the lean proxy for inference routes, Starlette for the rest.

Inference POSTs are dispatched before Starlette's middleware and router ever run, since every
microsecond there is paid on every request. Everything else (health, models, sidecars, and
404/405 for unknown routes) goes through Starlette, behind the API-key check.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llamasc.config import ModelCatalog
from llamasc.config.settings import Settings
from llamasc.errors import AuthError, LlamascError, NotFoundError, RequestError, clip
from llamasc.flags import FlagPolicy
from llamasc.server._types import PoolLike
from llamasc.server.admin import Admin
from llamasc.server.cors import CorsPolicy
from llamasc.server.envelope import MethodNotAllowedError, error_bytes, send_error
from llamasc.server.flaggate import FlagGate
from llamasc.server.guard import INTERNAL_MESSAGE, Guard
from llamasc.server.observing import Observing, is_public
from llamasc.server.passthrough import PREFIX as PASSTHROUGH_PREFIX
from llamasc.server.passthrough import Passthrough
from llamasc.server.relay import AUTH_MESSAGE, Proxy
from llamasc.server.routes import UI_ASSET, is_asset, routes_for
from llamasc.server.state import DaemonState, LlamaServerInfo
from llamasc.server.swaproutes import SwapRoutes

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
            headers = scope["headers"]
            auth = next((v for k, v in headers if k == b"authorization"), None)
            key = next((v for k, v in headers if k == b"x-api-key"), None)
            if not self.state.authorized(auth, key):
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
        err = NotFoundError(f"no route {request.method} {clip(request.url.path)}")
    elif exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        err = MethodNotAllowedError(
            f"{clip(request.url.path)} does not accept {request.method}", allow=allow
        )
    else:
        err = RequestError(exc.detail)
    return _error_response(err)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer: the traceback is logged once, by the server.
    return _error_response(LlamascError(INTERNAL_MESSAGE))


class LlamascApp(Starlette):
    """Starlette for the admin routes, with the inference routes short-circuited in front."""

    def __init__(self, state: DaemonState) -> None:
        self.llamasc = state
        self._proxy = Proxy(state)
        self._guard = Guard(
            self._dispatch, CorsPolicy(state.settings.cors_origins), lambda: state.draining
        )
        self._passthrough = Passthrough(state, self._proxy)  # llama-swap's /upstream/...

        super().__init__(
            routes=[
                *Admin(state).routes(),
                *SwapRoutes(state).routes(),
                *Observing(state).routes(),
            ],
            middleware=[Middleware(_RequireKey, state=state)],
            exception_handlers={
                LlamascError: _on_llamasc_error,
                HTTPException: _on_http_exception,
                Exception: _on_unexpected,
            },
            lifespan=lambda app: state.running(),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guard(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            routes = routes_for(path)
            if routes is not None and not self._answered_here(path, scope):
                await self._proxy(scope, receive, send, routes)
                return
            if path.startswith(PASSTHROUGH_PREFIX):
                await self._passthrough(scope, receive, send)
                return
            if routes is None and scope["method"] == "GET" and is_asset(path):
                await self._proxy(scope, receive, send, _UI_ASSET)
                return
        await super().__call__(scope, receive, send)

    def _answered_here(self, path: str, scope: Scope) -> bool:
        """Plain ``GET /metrics`` is llamasc's own; ``GET /props`` naming no model, with several
        models, is llama.cpp router's own answer (what its web UI asks first)."""
        if path == "/metrics":
            return not _names_model(scope)
        if path == "/props" and scope["method"] == "GET" and len(self.llamasc.catalog) != 1:
            return not _names_model(scope)
        return False


_UI_ASSET = {"GET": UI_ASSET}


def _names_model(scope: Scope) -> bool:
    """``GET /metrics`` names a model (then it is that sidecar's own); plain is llamasc's."""
    return b"model=" in scope["query_string"] or any(
        k == b"x-model-id" for k, _ in scope["headers"]
    )


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
