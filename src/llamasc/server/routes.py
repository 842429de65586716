"""Every llama-server route llamasc relays: one line per route.

Taken from the routes our pinned build (b11434) registers in ``tools/server/server.cpp``, not
picked by hand. Each line says where the request's model comes from and whether the request
may start a sidecar:

* ``model``: ``X-Model-Id`` always wins; then ``body`` (the JSON body's ``"model"``) or
  ``query`` (``?model=``, as llama.cpp's router does for GET routes); then the fallback.
* ``fallback``: what a request naming no model gets. ``only``: the only configured model
  (editors and llama-server's own clients often send none). ``none``: nothing (plain
  ``GET /metrics`` is llamasc's own metrics). ``any``: a running sidecar's model, else the
  first configured one (the web UI's page is the same whichever model serves it).
* ``starts``: False for routes about a running server's state (slots, metrics, live
  streams): they are answered by a running sidecar of the model, or refused with llama.cpp
  router's "model is not loaded"; they never start one.
* ``mode``: the flag the route implies (``--embedding`` for embeddings, ``--reranking`` for
  rerank): the request goes to a sidecar started with it (unless the model's config says
  ``embeddings = false``, then llama-server answers its own 501).

Not relayed, because llamasc answers them itself: ``GET /health`` and ``/v1/health``
(llamasc's health), ``GET /models`` and ``/v1/models`` (the router API's list), and
``POST /models/load`` / ``/models/unload`` (the router API over the pool; see ``models.py``).
Router-only ``POST``/``DELETE /models`` and ``GET /models/sse`` are not offered: llamasc's
models come from its configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelSource = Literal["body", "query"]
Fallback = Literal["only", "none", "any"]

EMBEDDING = "--embedding"
RERANKING = "--reranking"


@dataclass(frozen=True, slots=True)
class Route:
    """One relayed route: method, path, where the model comes from, may it start a sidecar."""

    method: str
    path: str
    model: ModelSource
    starts: bool = True
    fallback: Fallback = "only"
    mode: str | None = None


def _post(path: str, *, starts: bool = True, mode: str | None = None) -> Route:
    return Route("POST", path, "body", starts=starts, mode=mode)


def _get(path: str, *, starts: bool = True, fallback: Fallback = "only") -> Route:
    return Route("GET", path, "query", starts=starts, fallback=fallback)


SLOT_ACTION = "/slots/{id}"

# fmt: off
ROUTE_TABLE: tuple[Route, ...] = (
    # OpenAI-compatible and native inference
    _post("/v1/chat/completions"),
    _post("/chat/completions"),
    _post("/v1/completions"),
    _post("/completions"),
    _post("/completion"),
    _post("/infill"),
    _post("/v1/chat/completions/input_tokens"),
    _post("/chat/completions/input_tokens"),
    _post("/v1/chat/completions/control", starts=False),
    _post("/v1/audio/transcriptions"),
    _post("/audio/transcriptions"),
    _post("/predict"),
    _post("/v1/systemone"),
    # coding agents: Anthropic Messages and OpenAI Responses
    _post("/v1/messages"),
    _post("/v1/messages/count_tokens"),
    _post("/v1/responses"),
    _post("/responses"),
    _post("/v1/responses/input_tokens"),
    _post("/responses/input_tokens"),
    # route-implied modes
    _post("/v1/embeddings", mode=EMBEDDING),
    _post("/embeddings", mode=EMBEDDING),
    _post("/embedding", mode=EMBEDDING),
    _post("/v1/rerank", mode=RERANKING),
    _post("/rerank", mode=RERANKING),
    _post("/v1/reranking", mode=RERANKING),
    _post("/reranking", mode=RERANKING),
    # tokens and templates
    _post("/tokenize"),
    _post("/detokenize"),
    _post("/apply-template"),
    # server state
    _get("/props"),
    _post("/props"),
    _get("/slots", starts=False),
    Route("POST", SLOT_ACTION, "body", starts=False),
    _get("/metrics", starts=False, fallback="none"),
    _get("/lora-adapters"),
    _post("/lora-adapters"),
    # live streams of a running server
    _get("/v1/stream", starts=False),
    Route("DELETE", "/v1/stream", "query", starts=False),
    _post("/v1/streams/lookup", starts=False),
    # tools and the web UI's helpers (llama-server answers 403 unless its flags enable them)
    _get("/tools"),
    _post("/tools"),
    _get("/cors-proxy"),
    _post("/cors-proxy"),
    # llama.cpp's web UI, in builds that embed it (assets: see ``is_asset``)
    _get("/", fallback="any"),
)
# fmt: on

ROUTES: dict[str, dict[str, Route]] = {}
for _r in ROUTE_TABLE:
    ROUTES.setdefault(_r.path, {})[_r.method] = _r

UI_ASSET = Route("GET", "/{asset}", "query", fallback="any")
_ASSET_SUFFIXES = (
    ".html", ".js", ".mjs", ".css", ".map", ".svg", ".png", ".jpg", ".jpeg", ".gif", ".webp",
    ".ico", ".woff", ".woff2", ".ttf", ".webmanifest", ".gz",
)  # fmt: skip


OWN_UI = "/ui/"  # llamasc's own dashboard (server/observing.py): never a sidecar's asset


def is_asset(path: str) -> bool:
    """A static file of llama-server's web UI (``/index.html``, ``/_app/...js``), by its name."""
    return path.endswith(_ASSET_SUFFIXES) and ".." not in path and not path.startswith(OWN_UI)


def routes_for(path: str) -> dict[str, Route] | None:
    """The relayed routes at ``path`` by method, or None when llamasc does not relay it."""
    found = ROUTES.get(path)
    if found is not None:
        return found
    if path.startswith("/slots/"):
        return ROUTES[SLOT_ACTION]
    return None


def table_markdown() -> str:
    """The route table as Markdown (for the README and ``--help`` texts)."""
    lines = ["| method | path | model from | may start |", "|---|---|---|---|"]
    for r in ROUTE_TABLE:
        source = {"body": 'body "model"', "query": "?model="}[r.model]
        source += {"only": ", else the only model", "none": "", "any": ", else any"}[r.fallback]
        start = "yes" + (f" (with `{r.mode}`)" if r.mode else "") if r.starts else "no"
        lines.append(f"| {r.method} | `{r.path}` | X-Model-Id, {source} | {start} |")
    return "\n".join(lines)


__all__ = [
    "EMBEDDING",
    "RERANKING",
    "ROUTES",
    "ROUTE_TABLE",
    "SLOT_ACTION",
    "UI_ASSET",
    "Route",
    "is_asset",
    "routes_for",
    "table_markdown",
]
