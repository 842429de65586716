"""The daemon's own routes: health, models, sidecars (list, logs, stop). Starlette, off the hot
path: these are called by people and by ``llamasc ps``/``kill``, not per token."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from llamasc import __version__
from llamasc.errors import RequestError
from llamasc.pool.sidecar import sidecar_dict
from llamasc.process.rpc import RpcWorker, rpc_workers, worker_status
from llamasc.server._types import SidecarInfoLike
from llamasc.server.models import (
    list_models,
    load_model,
    router_props,
    unload_model,
)
from llamasc.server.state import DaemonState

_HASH_PREFIX = re.compile(r"[0-9a-f]{8,64}")
_MAX_LOG_LINES = 10000


def sidecar_json(info: SidecarInfoLike) -> dict[str, Any]:
    """One sidecar as JSON: :func:`llamasc.pool.sidecar.sidecar_dict`, the one serialisation."""
    return sidecar_dict(info)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _prefix(request: Request) -> str:
    prefix = str(request.path_params["hash"]).lower()
    if not _HASH_PREFIX.fullmatch(prefix):
        raise RequestError(
            f"sidecar hash must be 8 to 64 hex characters (a unique prefix), got {prefix!r}"[:200]
        )
    return prefix


class Admin:
    """The admin endpoints over one daemon's state."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/models", self.models, methods=["GET"]),
            # llama.cpp router mode's API (server/models.py)
            Route("/models/load", self.load, methods=["POST"]),
            Route("/models/unload", self.unload, methods=["POST"]),
            Route("/props", self.props, methods=["GET"]),
            Route("/models", self.reload_models, methods=["POST"]),  # ?reload=1 (discovery)
            Route("/sidecars", self.sidecars, methods=["GET"]),
            Route("/sidecars", self.stop_many, methods=["DELETE"]),
            Route("/sidecars/{hash}", self.sidecar, methods=["GET"]),
            Route("/sidecars/{hash}", self.stop_one, methods=["DELETE"]),
            Route("/sidecars/{hash}/logs", self.logs, methods=["GET"]),
        ]

    async def health(self, request: Request) -> JSONResponse:
        st = self.state
        return JSONResponse(
            {
                "status": "shutting_down" if st.draining else "ok",
                "version": __version__,
                "uptime": round(st.uptime(), 3),
                "started": st.started_at,
                "sidecars": len(st.pool.sidecars()),
                "max_sidecars": st.settings.max_sidecars,
                "models": len(st.catalog),
                # per device: budget, held by the children, free (issue 12); {} = count only
                "memory": st.pool.memory() if hasattr(st.pool, "memory") else {},
                "llama_server": {
                    "path": str(st.llama_server.path) if st.llama_server.path else None,
                    "version": st.llama_server.version,
                },
                "rpc_workers": await worker_status(self._rpc_workers()),
            },
            status_code=503 if st.draining else 200,
        )

    async def reload_models(self, request: Request) -> JSONResponse:
        """``POST /models?reload=1``: rescan the models folders and caches now."""
        if not _truthy(request.query_params.get("reload")):
            raise RequestError("POST /models only rescans the models: send ?reload=1")
        report = await self.state.rescan_models()
        return JSONResponse(report.json())

    def _rpc_workers(self) -> list[RpcWorker]:
        """The RPC workers of BASE_ARGS and of every running sidecar, each once."""
        pool = self.state.pool
        found = dict.fromkeys(rpc_workers(getattr(pool, "base_args", ())))  # fakes have none
        for info in pool.sidecars():
            found.update(dict.fromkeys(rpc_workers(info.flags)))
        return list(found)

    async def models(self, request: Request) -> JSONResponse:
        if _truthy(request.query_params.get("reload")):  # llama.cpp's router: GET ?reload=1
            await self.state.rescan_models()
        return await list_models(self.state)

    async def load(self, request: Request) -> JSONResponse:
        return await load_model(self.state, request)

    async def unload(self, request: Request) -> JSONResponse:
        return await unload_model(self.state, request)

    async def props(self, request: Request) -> JSONResponse:
        return await router_props(self.state)

    async def sidecars(self, request: Request) -> JSONResponse:
        infos = self.state.pool.sidecars()
        return JSONResponse({"now": time.time(), "sidecars": [sidecar_json(i) for i in infos]})

    async def sidecar(self, request: Request) -> JSONResponse:
        info = self.state.pool.find(_prefix(request))
        return JSONResponse({"now": time.time(), "sidecar": sidecar_json(info)})

    async def logs(self, request: Request) -> JSONResponse:
        prefix = _prefix(request)
        raw = request.query_params.get("n", "200")
        try:
            n = int(raw)
        except ValueError:
            n = -1
        if not 1 <= n <= _MAX_LOG_LINES:
            raise RequestError(
                f"n must be an integer from 1 to {_MAX_LOG_LINES}, got {raw!r}"[:200]
            )
        info = self.state.pool.find(prefix)
        lines = list(self.state.pool.logs(prefix, n))
        return JSONResponse({"hash": info.hash, "lines": lines})

    async def stop_one(self, request: Request) -> JSONResponse:
        info = await self.state.pool.stop_sidecar(_prefix(request))
        return self._stopped([info])

    async def stop_many(self, request: Request) -> JSONResponse:
        params = request.query_params
        model = params.get("model")
        everything = params.get("all", "").lower() in ("1", "true", "yes")
        if model and everything:
            raise RequestError("give either ?model=ID or ?all=1, not both")
        if everything:
            return self._stopped(await self.state.pool.stop_all())
        if model:
            self.state.catalog.get(model)  # 404 listing the known ids
            return self._stopped(await self.state.pool.stop_model(model))
        raise RequestError("say which sidecars to stop: ?model=ID or ?all=1")

    def _stopped(self, infos: Sequence[SidecarInfoLike]) -> JSONResponse:
        return JSONResponse({"stopped": [sidecar_json(i) for i in infos]})


__all__ = ["Admin", "sidecar_json"]
