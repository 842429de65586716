"""llama.cpp's router API over the pool: ``GET /models`` (and ``/v1/models``),
``POST /models/load`` and ``POST /models/unload``.

A model entry carries router mode's fields (``aliases``, ``tags``, ``status`` with ``value``
``loaded`` / ``loading`` / ``unloaded`` and the running sidecar's ``args``, plus ``failed`` and
``exit_code`` when the last load failed) beside llamasc's own (``owned_by``, ``sidecars``), so
llama.cpp's web UI and scripts written for the router work unchanged.

``/models/load`` answers at once, as the router does, and starts the model's sidecar (for the
request's ``X-Agent-Flags``) in the background: poll ``status.value``. ``/models/unload`` stops
every sidecar of the model.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from llamasc.config.swapfields import ModelSwapFields
from llamasc.errors import LlamascError, RequestError, UnknownModelError
from llamasc.pool.sidecar import sidecar_dict
from llamasc.server._request import header_text
from llamasc.server._types import SidecarInfoLike
from llamasc.server.model_meta import model_meta_json
from llamasc.server.state import DaemonState

log = logging.getLogger(__name__)

_STATUS = {"ready": "loaded", "starting": "loading"}


def _tags_of(args: Sequence[str]) -> list[str]:
    tags: list[str] = []
    for i, tok in enumerate(args[:-1]):
        if tok == "--tags":
            tags += [t.strip() for t in args[i + 1].split(",") if t.strip()]
    return tags


def model_entry(
    st: DaemonState, model_id: str, infos: Sequence[SidecarInfoLike], created: int
) -> dict[str, Any]:
    """One model of the list: router mode's fields and llamasc's."""
    live = [i for i in infos if i.state != "stopping"]
    values = {_STATUS.get(str(i.state), "unloaded") for i in live}
    value = next((v for v in ("loaded", "loading") if v in values), "unloaded")
    shown = [i for i in live if _STATUS.get(str(i.state)) == value] or live
    base = () if st.catalog.is_opaque(model_id) else tuple(getattr(st.pool, "base_args", ()))
    args = list(shown[-1].flags) if shown else list(base)
    status: dict[str, Any] = {"value": value, "args": args}
    failure = st.load_failures.get(model_id)
    if failure is not None and value == "unloaded":
        status["failed"] = True
        status["exit_code"] = failure
    ms = st.settings.models.get(model_id)
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "llamasc",
        "aliases": [],
        "tags": list(dict.fromkeys(_tags_of(base) + (list(ms.tags) if ms else []))),
        "status": status,
        "meta": model_meta_json(st.catalog.models[model_id]),
        "sidecars": [
            {
                "hash": i.hash,
                "state": str(i.state),
                "port": i.port,
                "flags": list(i.flags),
                "memory": sidecar_dict(i)["memory"],
            }
            for i in infos
        ],
    }


def swap_listing(
    entry: dict[str, Any], extra: ModelSwapFields, with_aliases: bool
) -> list[dict[str, Any]]:
    """Add llama-swap's ``name``/``description``/``meta.llamaswap`` to a /v1/models entry;
    return its aliases as entries of their own when ``includeAliasesInList`` asks for it."""
    if extra.name:
        entry["name"] = extra.name
    if extra.description:
        entry["description"] = extra.description
    if extra.metadata:
        entry["meta"] = {**entry.get("meta", {}), "llamaswap": dict(extra.metadata)}
    if extra.capabilities:
        entry["capabilities"] = dict(extra.capabilities)
    if not with_aliases:
        return []
    return [{**entry, "id": alias, "sidecars": entry["sidecars"]} for alias in extra.aliases]


async def list_models(st: DaemonState) -> JSONResponse:
    by_model: dict[str, list[SidecarInfoLike]] = {}
    for info in st.pool.sidecars():
        by_model.setdefault(info.model, []).append(info)
    created = int(st.started_at)
    data: list[dict[str, Any]] = []
    for model_id in st.catalog.ids():
        extra = st.settings.models.get(model_id)
        if extra is not None and extra.unlisted:
            continue
        entry = model_entry(st, model_id, by_model.get(model_id, []), created)
        data.append(entry)
        if extra is not None:
            entry["aliases"] = list(extra.aliases)
            data.extend(swap_listing(entry, extra, st.settings.include_aliases_in_list))
    for name, peer_id in st.peers.listing():  # models on other hosts (llama-swap's peers)
        data.append(
            {"id": name, "object": "model", "created": created, "owned_by": peer_id,
             "peer": peer_id, "status": {"value": "unknown"}, "sidecars": []}
        )  # fmt: skip
    return JSONResponse({"object": "list", "data": data})


async def router_props(st: DaemonState) -> JSONResponse:
    """``GET /props`` naming no model, with several models: what llama.cpp's router answers
    (its web UI reads ``role`` to show the model selector)."""
    return JSONResponse(
        {
            "role": "router",
            "max_instances": st.settings.max_sidecars,
            "models_autoload": True,
            "model_alias": "llamasc",
            "model_path": "none",
            "default_generation_settings": {"params": {}, "n_ctx": 0},
            "ui_settings": {},
            "webui_settings": {},
            "build_info": st.llama_server.version,
            "cors_proxy_enabled": False,
        }
    )


async def _model_and_flags(st: DaemonState, request: Request) -> tuple[str, tuple[str, ...]]:
    body = await request.body()
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        raise RequestError("request body is not valid JSON") from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, str) or not model.strip():
        raise RequestError('give the model as {"model": "ID"}')
    raw = request.headers.get("x-agent-flags")
    flags = st.gate.canonical(header_text(raw.encode(), "X-Agent-Flags")) if raw else ()
    return model.strip(), flags


def _running(st: DaemonState, model: str) -> list[SidecarInfoLike]:
    return [i for i in st.pool.sidecars() if i.model == model and i.state != "stopping"]


async def load_model(st: DaemonState, request: Request) -> JSONResponse:
    model, flags = await _model_and_flags(st, request)
    if model not in st.catalog:
        raise UnknownModelError(f"model is not found: {model!r}")
    if not flags and _running(st, model):
        raise RequestError(f"model is already running: {model!r}")
    st.load_failures.pop(model, None)
    task = asyncio.get_running_loop().create_task(_load(st, model, flags), name=f"load {model}")
    st.background.add(task)
    task.add_done_callback(st.background.discard)
    return JSONResponse({"success": True})


async def _load(st: DaemonState, model: str, flags: tuple[str, ...]) -> None:
    try:
        async with st.pool.lease(model, flags):
            pass
    except LlamascError as exc:
        log.warning("POST /models/load %s failed: %s", model, exc)
        st.load_failures[model] = getattr(exc, "returncode", None) or -1


async def unload_model(st: DaemonState, request: Request) -> JSONResponse:
    model, _ = await _model_and_flags(st, request)
    if model not in st.catalog:
        raise RequestError(f"model is not found: {model!r}")
    if not _running(st, model):
        raise RequestError(f"model is not running: {model!r}")
    await st.pool.stop_model(model)
    return JSONResponse({"success": True})


__all__ = ["list_models", "load_model", "model_entry", "router_props", "unload_model"]
