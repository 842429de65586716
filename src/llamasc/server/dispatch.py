"""Deciding where a relayed request goes: its model, its flags, and (for routes that may not
start a sidecar) which running sidecar answers it. Off the warm path of the inference routes
except :func:`with_mode`, which is one dict lookup once warm."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from llamasc.errors import RequestError
from llamasc.flags import merge_flags
from llamasc.server._request import model_from_body
from llamasc.server.routes import EMBEDDING, Route
from llamasc.server.state import DaemonState

_MODE_CACHE: dict[tuple[tuple[str, ...], str, str | None], tuple[str, ...]] = {}
_MODE_CACHE_SIZE = 1024
_SEPARATORS = ("/", "\\")


def query_model(query: bytes) -> str:
    """``?model=`` of a query string, or ""."""
    if b"model=" not in query:
        return ""
    values = [v for k, v in parse_qsl(query.decode("latin-1")) if k == "model"]
    return values[-1].strip() if values else ""


def strip_model(query: bytes) -> bytes:
    """The query string without ``model=`` (it is ours; llama-server would not know it)."""
    if b"model=" not in query:
        return query
    pairs = [(k, v) for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True)]
    return urlencode([(k, v) for k, v in pairs if k != "model"]).encode("latin-1")


def pick_model(route: Route, st: DaemonState, body: bytes, query: bytes) -> str:
    """The model of a request that named none in ``X-Model-Id``."""
    if route.model == "body" and b'"model"' in body:
        return model_from_body(body)
    model = query_model(query)
    if model:
        return model
    known = st.catalog.ids()
    if route.fallback == "any":
        running = [s.model for s in st.pool.sidecars() if s.state == "ready"]
        if running:
            return running[-1]
        if known:
            return known[0]
    elif route.fallback == "only" and len(known) == 1:
        return known[0]
    if route.model == "body" and route.method == "POST":
        model_from_body(body)  # says what is wrong with the body (empty, not JSON, no model)
    raise RequestError(
        f"{route.method} {route.path} needs a model: add ?model=ID or send the X-Model-Id "
        f"header (known: {', '.join(known[:20]) or 'none'})"
    )


def with_mode(flags: tuple[str, ...], mode: str, pooling: str | None = None) -> tuple[str, ...]:
    """``flags`` plus the route-implied ``mode`` flag (and, for embeddings, the model's
    configured ``--pooling``), canonical (cached)."""
    hit = _MODE_CACHE.get((flags, mode, pooling))
    if hit is None:
        if len(_MODE_CACHE) >= _MODE_CACHE_SIZE:
            _MODE_CACHE.clear()
        extra = (mode, "--pooling", pooling) if pooling and mode == EMBEDDING else (mode,)
        hit = _MODE_CACHE[(flags, mode, pooling)] = merge_flags(flags, extra)
    return hit


def running_flags(st: DaemonState, model: str, flags: Sequence[str]) -> tuple[str, ...]:
    """The flags of the running sidecar of ``model`` that a non-starting route talks to.

    With ``X-Agent-Flags``, the sidecar must have been started with them; otherwise the most
    recently used ready sidecar of the model answers. None running: llama.cpp router's answer.
    """
    st.catalog.get(model)  # 404 listing the known ids
    want = set(_pairs(flags))
    ready = [s for s in st.pool.sidecars() if s.model == model and s.state == "ready"]
    ready = [s for s in ready if want <= set(_pairs(s.flags))]
    if not ready:
        extra = " with these X-Agent-Flags" if flags else ""
        raise RequestError(f"model is not loaded: no sidecar of {model!r} is running{extra}")
    best = max(ready, key=lambda s: _plain_time(s.last_used))
    return tuple(best.flags)


def _pairs(flags: Sequence[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, tok in enumerate(flags):
        if tok.startswith("-"):
            nxt = flags[i + 1] if i + 1 < len(flags) else ""
            out.append((tok, "" if nxt.startswith("-") else nxt))
    return out


def _plain_time(value: Any) -> float:
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value or 0)


def check_slot_action(body: bytes) -> None:
    """Slot save/restore take a file *name* inside llama-server's ``--slot-save-path``: a
    client may never choose a path."""
    if b"filename" not in body:
        return
    try:
        data = json.loads(body)
    except ValueError:
        return  # llama-server answers malformed JSON itself
    name = data.get("filename") if isinstance(data, dict) else None
    if name is None:
        return
    if not isinstance(name, str) or any(s in name for s in _SEPARATORS) or ".." in name:
        raise RequestError(
            f"slot filename {name!r} is refused: give a plain file name (no path separators "
            "or '..'); files live in the operator's --slot-save-path"[:300]
        )


__all__ = [
    "check_slot_action",
    "pick_model",
    "query_model",
    "running_flags",
    "strip_model",
    "with_mode",
]
