"""The differential test: every route of the table, sent once directly to a real llama-server
(the daemon's own sidecar, so model and flags are the same) and once through the daemon, with
the real SmolLM2. Compared: status, content type, the JSON shape (keys and value types, not
generated text) and, for streams, the sequence of event shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fakes import ThreadDaemon, free_port_range

from llamasc.config.settings import settings_from_sources
from llamasc.server.routes import ROUTE_TABLE

pytestmark = pytest.mark.real

MSG = [{"role": "user", "content": "Say hello."}]
TOOL_OAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TOOL_ANT = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": TOOL_OAI["function"]["parameters"],  # type: ignore[index]
}
GEN = {"max_tokens": 4, "temperature": 0}
# greedy, so both sends generate the same tokens: a sampled stream can end at its first token
# and its event sequence then differs from the other send's
RESP_GEN = {"max_output_tokens": 4, "temperature": 0}

# (method, path, JSON body or query params). Each route of the table appears at least once.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/chat/completions", {"messages": MSG, **GEN}),
    ("POST", "/v1/chat/completions", {"messages": MSG, "stream": True, **GEN}),
    ("POST", "/v1/chat/completions", {"messages": MSG, "tools": [TOOL_OAI], **GEN}),
    ("POST", "/chat/completions", {"messages": MSG, "stream": True, **GEN}),
    ("POST", "/v1/completions", {"prompt": "Once upon", **GEN}),
    ("POST", "/v1/completions", {"prompt": "Once upon", "stream": True, **GEN}),
    ("POST", "/completions", {"prompt": "Once upon", "n_predict": 4}),
    ("POST", "/completion", {"prompt": "Once upon", "n_predict": 4, "temperature": 0,
                             "stream": True}),
    ("POST", "/infill", {"input_prefix": "def add(a, b):\n    ", "input_suffix": "\n", **GEN}),
    ("POST", "/v1/chat/completions/input_tokens", {"messages": MSG}),
    ("POST", "/chat/completions/input_tokens", {"messages": MSG}),
    ("POST", "/v1/chat/completions/control", {}),
    ("POST", "/v1/audio/transcriptions", {}),
    ("POST", "/audio/transcriptions", {}),
    ("POST", "/predict", {"instances": [{"prompt": "hi"}]}),
    ("POST", "/v1/systemone", {}),
    ("POST", "/v1/messages", {"messages": MSG, **GEN}),
    ("POST", "/v1/messages", {"messages": MSG, "stream": True, **GEN}),
    ("POST", "/v1/messages", {"messages": MSG, "tools": [TOOL_ANT], **GEN}),
    ("POST", "/v1/messages/count_tokens", {"messages": MSG}),
    ("POST", "/v1/responses", {"input": "Say hello.", **RESP_GEN}),
    ("POST", "/v1/responses", {"input": "Say hello.", "stream": True, **RESP_GEN}),
    ("POST", "/responses", {"input": "Say hello.", **RESP_GEN}),
    ("POST", "/v1/responses/input_tokens", {"input": "Say hello."}),
    ("POST", "/responses/input_tokens", {"input": "Say hello."}),
    ("POST", "/v1/embeddings", {"input": "hello"}),
    ("POST", "/embeddings", {"content": "hello"}),
    ("POST", "/embedding", {"content": "hello"}),
    ("POST", "/v1/rerank", {"query": "q", "documents": ["a", "b"]}),
    ("POST", "/rerank", {"query": "q", "documents": ["a", "b"]}),
    ("POST", "/v1/reranking", {"query": "q", "documents": ["a", "b"]}),
    ("POST", "/reranking", {"query": "q", "documents": ["a", "b"]}),
    ("POST", "/tokenize", {"content": "Hello world", "with_pieces": True}),
    ("POST", "/detokenize", {"tokens": [19556, 905]}),
    ("POST", "/apply-template", {"messages": MSG}),
    ("GET", "/props", {}),
    ("POST", "/props", {"foo": 1}),
    ("GET", "/slots", {}),
    ("POST", "/slots/0?action=erase", {}),
    ("POST", "/slots/0?action=save", {"filename": "diff.bin"}),
    ("GET", "/metrics", {}),
    ("GET", "/lora-adapters", {}),
    ("POST", "/lora-adapters", {"lora": []}),  # the body llama-server takes is a list
    ("GET", "/v1/stream", {}),
    ("DELETE", "/v1/stream", {}),
    ("POST", "/v1/streams/lookup", {}),
    ("GET", "/tools", {}),
    ("POST", "/tools", {}),
    ("GET", "/cors-proxy", {"url": "http://127.0.0.1:9/"}),
    ("POST", "/cors-proxy", {}),
    ("GET", "/", {}),
]


# Routes a working relay must answer 200 for with SmolLM2 (the others answer llama-server's own
# 4xx/5xx for this model or these flags: no FIM tokens, no audio, tools disabled, ...).
MUST_SUCCEED = {
    "/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions",
    "/completion", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/responses",
    "/v1/embeddings", "/embeddings", "/v1/rerank", "/tokenize", "/detokenize",
    "/apply-template", "/props", "/slots", "/metrics", "/lora-adapters",
}  # fmt: skip


def shape(value: Any) -> Any:
    """Keys and value types, recursively; lists by the shapes of their items."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        shapes: list[Any] = []
        for item in value:
            s = shape(item)
            if s not in shapes:
                shapes.append(s)
        return shapes
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def sse_shape(text: str) -> list[Any]:
    """The event sequence: (event name, data shape), consecutive repeats collapsed."""
    out: list[Any] = []
    event = None
    for line in text.splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
            try:
                item: Any = (event, shape(json.loads(data)))
            except ValueError:
                item = (event, data)
            if not out or out[-1] != item:
                out.append(item)
            event = None
    return out


def body_shape(r: httpx.Response) -> Any:
    ctype = r.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        return sse_shape(r.text)
    if "json" in ctype:
        return shape(r.json())
    if ctype.startswith("text/plain") and "# TYPE" in r.text:  # Prometheus: metric names
        return sorted(ln.split()[2] for ln in r.text.splitlines() if ln.startswith("# TYPE"))
    return len(r.content) > 0


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, llama_server_bin: Path, smollm2_path: Path
) -> Iterator[ThreadDaemon]:
    tmp = tmp_path_factory.mktemp("diff")
    (tmp / "slots").mkdir()
    model_map = tmp / "models.json"
    model_map.write_text(json.dumps({"smol": str(smollm2_path)}))
    lo, hi = free_port_range()
    base = ["-c", "1024", "-np", "1", "-t", "2", "--metrics", "--props"]
    base += ["--slot-save-path", str(tmp / "slots")]
    values: dict[str, Any] = {
        "llama_server_bin": str(llama_server_bin),
        "model_map_file": str(model_map),
        "bind": "127.0.0.1:0",
        "port_range": f"{lo}-{hi}",
        "base_args": json.dumps(base),
        "max_sidecars": "3",
        "home": str(tmp / "home"),
        "health_timeout": "120",
    }
    # the embedding sidecar gets the model's configured --pooling (SmolLM2's own is "none",
    # which /v1/embeddings refuses)
    models = {"models": {"smol": {"pooling": "mean"}}}
    d = ThreadDaemon(settings_from_sources(env={}, cli=values, file_data=models))
    with httpx.Client(base_url=d.url, timeout=120) as c:  # the routes that never start one
        assert c.post("/v1/chat/completions", json={"messages": MSG, **GEN}).status_code == 200
    yield d
    d.stop()


def _sidecar_port(d: ThreadDaemon, path: str) -> int:
    mode = next((r.mode for r in ROUTE_TABLE if r.path == path and r.mode), None)
    want = {"--embedding": "--embedding", "--reranking": "--rerank"}.get(mode or "")
    for s in d.sidecars():
        modes = {f for f in s["flags"] if f in ("--embedding", "--rerank")}
        if (want is None and not modes) or (want is not None and want in modes):
            return int(s["port"])
    raise AssertionError(f"no sidecar for {path} among {d.sidecars()}")


def _send(c: httpx.Client, method: str, path: str, data: dict[str, Any], **kw: Any) -> Any:
    if method == "GET":
        return c.request(method, path, params=data, **kw)
    if method == "DELETE":
        return c.request(method, path, **kw)
    return c.request(method, path, json=data, **kw)


@pytest.mark.parametrize(
    ("method", "path", "data"),
    CASES,
    ids=[f"{m} {p}{' stream' if d.get('stream') else ''}" for m, p, d in CASES],
)
def test_same_answer_direct_and_through_llamasc(
    daemon: ThreadDaemon, method: str, path: str, data: dict[str, Any]
) -> None:
    with httpx.Client(base_url=daemon.url, timeout=120) as c:
        via = _send(c, method, path, data, headers={"X-Model-Id": "smol"})
    port = _sidecar_port(daemon, path.split("?", maxsplit=1)[0])
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
        direct = _send(c, method, path, data)
    assert via.status_code == direct.status_code, (via.text[:300], direct.text[:300])
    if path in MUST_SUCCEED and not (method == "POST" and path == "/lora-adapters"):
        assert via.status_code == 200, via.text[:300]
    assert via.headers.get("content-type") == direct.headers.get("content-type")
    assert body_shape(via) == body_shape(direct), (via.text[:500], direct.text[:500])


def test_every_route_of_the_table_is_in_the_cases() -> None:
    tried = {(m, p.split("?")[0].replace("/slots/0", "/slots/{id}")) for m, p, _ in CASES}
    assert {(r.method, r.path) for r in ROUTE_TABLE} <= tried
