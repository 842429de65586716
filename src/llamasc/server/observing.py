"""The observability routes: ``/metrics``, ``/api/events``, ``/api/activity``, ``/api/memory``
and the ``/ui/`` dashboard; and :func:`build_observer`, which makes the daemon's observer.

``GET /metrics`` without a model is llamasc's own Prometheus text; with ``?model=`` (or
``X-Model-Id``) it is that sidecar's llama-server ``/metrics``, relayed (see the relay).
``GET /api/events`` is a server-sent event stream: a ``state`` event first, then every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from llamasc.config.settings import Settings
from llamasc.errors import NotFoundError, RequestError
from llamasc.observe.events import Event, Subscription
from llamasc.observe.history import History
from llamasc.observe.metrics import CONTENT_TYPE
from llamasc.observe.observer import Observer
from llamasc.server._types import PoolLike
from llamasc.server.logstream import new_lines

if TYPE_CHECKING:
    from llamasc.server.state import DaemonState

log = logging.getLogger(__name__)

UI_DIR = Path(__file__).parent / "ui"
PING_EVERY = 15.0
DRAIN_CHECK = 1.0
LOG_POLL = 0.5
_MAX_ACTIVITY = 10000


def build_observer(settings: Settings, pool: PoolLike) -> Observer | None:
    """The daemon's observer, hooked to the pool's sidecar transitions (None when off)."""
    if not settings.observability:
        return None
    path = settings.resolved_history
    history = History(path, settings.history_days) if path is not None else None
    observer = Observer(history=history, sidecars=pool.sidecars)
    if hasattr(pool, "on_sidecar"):  # the real pool (test fakes have no children)
        pool.on_sidecar = observer.sidecar_state
    observer.add_memory_source(lambda: _projected(pool))
    memory = getattr(pool, "memory", None)  # the scheduler's budgets (issue 12)
    if memory is not None:
        observer.set_budget_source(lambda: {d: float(v["budget"]) for d, v in memory().items()})
    slot_cache = getattr(pool, "slot_cache_sizes", None)  # the prompt cache across swaps
    if slot_cache is not None:
        observer.set_slot_cache_source(slot_cache)
    return observer


def _projected(pool: PoolLike) -> list[tuple[str, str, float]]:
    """``(sidecar, device, bytes)`` of what the scheduler projected for each live sidecar."""
    rows: list[tuple[str, str, float]] = []
    for info in pool.sidecars():
        for device, value in (getattr(info, "memory_projected", None) or {}).items():
            rows.append((info.hash, device, float(value)))
    return rows


def is_public(path: str, query: bytes, state: DaemonState) -> bool:
    """Paths the API key does not guard: the dashboard's files (it asks for the key itself)
    and, with ``--metrics-public``, llamasc's own ``/metrics``."""
    if path == "/ui" or path.startswith("/ui/"):
        return True
    return path == "/metrics" and state.settings.metrics_public and b"model=" not in query


class Observing:
    """The observability endpoints over one daemon's state."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/api/events", self.events, methods=["GET"]),
            Route("/api/activity", self.activity, methods=["GET"]),
            Route("/api/memory", self.memory, methods=["GET"]),
            Route("/ui", lambda r: RedirectResponse("/ui/", status_code=308), methods=["GET"]),
            Route("/ui/auth.json", self.auth, methods=["GET"]),
            Mount("/ui", app=StaticFiles(directory=UI_DIR, html=True), name="ui"),
        ]

    async def auth(self, request: Request) -> JSONResponse:
        """Whether the API needs a key (public, so the page can ask for one before calling)."""
        return JSONResponse({"required": self.state.auth_required})

    def _observer(self) -> Observer:
        obs = self.state.observer
        if obs is None:
            raise NotFoundError("observability is off (--no-observability)")
        return obs

    async def metrics(self, request: Request) -> Response:
        if request.query_params.get("model") or request.headers.get("x-model-id"):
            return await self.sidecar_metrics(request)
        obs = self._observer()
        snap = obs.loop_snapshot()
        body = await asyncio.to_thread(obs.render, snap)
        return Response(body, media_type=CONTENT_TYPE)

    async def sidecar_metrics(self, request: Request) -> Response:
        """``/metrics?model=ID``: the sidecar's own metrics (relayed by the route table)."""
        raise RequestError("relaying a sidecar's /metrics is not available in this build")

    # --------------------------------------------------------------------- events

    def state_event(self, obs: Observer) -> Event:
        from llamasc.server.admin import sidecar_json

        st = self.state
        return obs.bus.snapshot_event(
            "state",
            sidecars=[sidecar_json(i) for i in st.pool.sidecars()],
            waiting={k: v for k, v in obs.waiting.items() if v > 0},
            in_flight={k: v for k, v in obs.in_flight.items() if v > 0},
            models=st.catalog.ids(),
            max_sidecars=st.settings.max_sidecars,
            draining=st.draining,
        )

    async def events(self, request: Request) -> Response:
        obs = self._observer()
        params = request.query_params
        logs = params.get("logs", "").lower() in ("1", "true", "yes")
        only = params.get("sidecar", "").lower() or None
        sub = obs.bus.subscribe()
        first = [self.state_event(obs)]
        return StreamingResponse(
            self._stream(sub, first, logs, only),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream(
        self, sub: Subscription, first: list[Event], logs: bool, only: str | None
    ) -> AsyncIterator[bytes]:
        poller = asyncio.create_task(self._poll_logs(sub, only)) if logs else None
        try:
            for event in first:
                yield event.sse()
            quiet = 0.0
            # Checked each second: a draining daemon ends its streams, or they would hold
            # its shutdown for the whole grace period.
            while not sub.closed and not self.state.draining:
                try:
                    async with asyncio.timeout(DRAIN_CHECK):  # not wait_for: see upstream_conn
                        events = await sub.get()
                except TimeoutError:
                    quiet += DRAIN_CHECK
                    if quiet >= PING_EVERY:
                        quiet = 0.0
                        yield b": ping\n\n"
                    continue
                quiet = 0.0
                for event in events:
                    yield event.sse()
        finally:
            sub.close()
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller

    async def _poll_logs(self, sub: Subscription, only: str | None) -> None:
        """New log lines of the sidecars (or of the one ``only`` names), as ``log`` events."""
        pool = self.state.pool
        seen: dict[str, list[str]] = {}
        bus = self.state.observer.bus if self.state.observer else None
        assert bus is not None
        while not sub.closed:
            for info in list(pool.sidecars()):
                if only and not info.hash.startswith(only):
                    continue
                try:
                    lines = list(pool.logs(info.hash, 500))
                except Exception:  # noqa: S112 (the sidecar went meanwhile)
                    continue
                prev = seen.get(info.hash, [])
                new = new_lines(prev, lines) if prev else lines[-50:]
                seen[info.hash] = lines
                for line in new:
                    sub.put(bus.snapshot_event("log", sidecar=info.hash[:8], line=line))
            await asyncio.sleep(LOG_POLL)

    # ------------------------------------------------------------------ activity

    async def activity(self, request: Request) -> JSONResponse:
        params = request.query_params
        raw = params.get("limit", "100")
        try:
            limit = int(raw)
        except ValueError:
            limit = -1
        if not 1 <= limit <= _MAX_ACTIVITY:
            raise RequestError(f"limit must be an integer from 1 to {_MAX_ACTIVITY}, got {raw!r}")
        model = params.get("model") or None
        since: float | None = None
        if params.get("since"):
            try:
                since = float(params["since"])
            except ValueError:
                raise RequestError(
                    f"since must be Unix seconds, got {params['since']!r}"[:200]
                ) from None
        obs = self.state.observer
        history = obs.history if obs is not None else None
        rows: list[dict[str, Any]] = []
        if history is not None:
            rows = await asyncio.to_thread(history.query, limit=limit, model=model, since=since)
        return JSONResponse(
            {
                "now": time.time(),
                "history": str(history.path) if history is not None else None,
                "requests": rows,
            }
        )

    async def memory(self, request: Request) -> JSONResponse:
        obs = self._observer()
        snap = obs.loop_snapshot()
        view = await asyncio.to_thread(obs.memory_view, snap)
        return JSONResponse(view)


__all__ = ["UI_DIR", "Observing", "build_observer", "is_public"]
