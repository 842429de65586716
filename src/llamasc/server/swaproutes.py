"""The routes llama-swap users and their scripts call: ``GET /running``, ``POST /unload``,
``POST /api/models/unload/{model}``, ``GET /logs`` (plain text) and ``GET /logs/stream``
(``/logs/stream/{model}``, followed: see :mod:`llamasc.server.logstream`)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from llamasc.server.logstream import LogStream
from llamasc.server.state import DaemonState

_LOG_LINES = 200


class SwapRoutes:
    def __init__(self, state: DaemonState) -> None:
        self.state = state
        self.stream = LogStream(state)

    def routes(self) -> list[Route]:
        return [
            Route("/running", self.running, methods=["GET"]),
            Route("/unload", self.unload_all, methods=["GET", "POST"]),
            Route("/api/models/unload", self.unload_all, methods=["POST"]),
            Route("/api/models/unload/{model:path}", self.unload_one, methods=["POST"]),
            Route("/logs", self.logs, methods=["GET"]),
            Route("/logs/stream", self.stream.all, methods=["GET"]),
            Route("/logs/stream/{model:path}", self.stream.model, methods=["GET"]),
        ]

    async def running(self, request: Request) -> JSONResponse:
        st = self.state
        out: list[dict[str, Any]] = []
        host = getattr(getattr(st.pool, "config", None), "host", "127.0.0.1")
        for info in st.pool.sidecars():
            extra = st.settings.models.get(info.model)
            out.append(
                {
                    "model": info.model,
                    "state": "ready" if info.state == "ready" else str(info.state),
                    # llama-swap's cmd and proxy: what this sidecar runs with and where
                    "cmd": _command(st, info.model, info.flags, info.port),
                    "proxy": _proxy(st, info.model, host, info.port),
                    "name": extra.name if extra else "",
                    "description": extra.description if extra else "",
                    "ttl": extra.ttl if extra and extra.ttl is not None else st.settings.ttl,
                    "hash": info.hash,
                    "pid": info.pid,
                    "port": info.port,
                    "in_flight": info.in_flight,
                }
            )
        return JSONResponse({"running": out})

    async def unload_all(self, request: Request) -> PlainTextResponse:
        await self.state.pool.stop_all()
        return PlainTextResponse("OK")

    async def unload_one(self, request: Request) -> JSONResponse:
        name = str(request.path_params["model"])
        model = self.state.catalog.get(name).id  # 404 (listing the ids) for an unknown one
        stopped = await self.state.pool.stop_model(model)
        return JSONResponse({"msg": "ok", "model": model, "stopped": len(stopped)})

    async def logs(self, request: Request) -> PlainTextResponse:
        lines: list[str] = []
        for info in self.state.pool.sidecars():
            for line in self.state.pool.logs(info.hash, _LOG_LINES):
                lines.append(f"[{info.model}] {line}")
        return PlainTextResponse("\n".join(lines) + ("\n" if lines else ""))


def _proxy(st: DaemonState, model: str, host: str, port: int) -> str:
    """Where the daemon sends a sidecar's requests: an opaque model's ``proxy``."""
    entry = st.catalog.models.get(model)
    if entry is not None and entry.opaque is not None:
        return entry.opaque.proxy.replace("${PORT}", str(port))
    return f"http://{host}:{port}"


def _command(st: DaemonState, model: str, flags: Sequence[str], port: int) -> str:
    """The command line a sidecar runs: an opaque model's own ``cmd`` (``${PORT}`` filled),
    else llama-server with the model's GGUF and the sidecar's canonical flags."""
    entry = st.catalog.models.get(model)
    if entry is not None and entry.opaque is not None:
        return shlex.join(a.replace("${PORT}", str(port)) for a in entry.opaque.argv)
    gguf = [] if entry is None else ["-m", str(entry.path)]
    return shlex.join(["llama-server", *gguf, *flags, "--port", str(port)])


__all__ = ["SwapRoutes"]
