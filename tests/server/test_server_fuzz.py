"""Nothing a client sends makes a 500: hypothesis over methods, paths, headers and bodies."""

from __future__ import annotations

import asyncio
import json
import string
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_fakes import FakePool, FakeUpstream

from llamasc.config import ModelCatalog, ModelEntry
from llamasc.config.settings import settings_from_sources
from llamasc.server import create_app

PATHS = [
    "/v1/chat/completions", "/chat/completions", "/v1/completions", "/completion",
    "/v1/embeddings", "/v1/rerank", "/health", "/v1/models", "/sidecars",
    "/sidecars/0123abcd", "/sidecars/0123abcd/logs", "/", "/v1",
]  # fmt: skip
header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
    max_size=60,
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda model, extra: json.dumps({"model": model, **extra}).encode(),
        st.sampled_from(["m1", "m2", "zz", ""]) | st.text(max_size=10) | st.integers(),
        st.dictionaries(st.sampled_from(["messages", "stream", "max_tokens", "prompt"]),
                        json_value, max_size=3),
    ),
)  # fmt: skip


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.sampled_from(PATHS)
    | st.text(alphabet=string.ascii_letters + string.digits + "/-_.%", max_size=30).map(
        lambda p: "/" + p
    ),
    headers=st.dictionaries(
        st.sampled_from(
            ["X-Model-Id", "X-Agent-Flags", "Content-Type", "Authorization", "Accept",
             "Content-Encoding", "Transfer-Encoding", "Expect"]
        ),
        header_text,
        max_size=4,
    ),
    body=bodies,
    key=st.sampled_from([None, "k"]),
)  # fmt: skip
def test_no_request_makes_a_500(
    fake_upstream: FakeUpstream,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    key: str | None,
) -> None:
    async def run() -> httpx.Response:
        pool = FakePool(fake_upstream.base_url, ["m1", "m2"])
        cat = ModelCatalog.of([ModelEntry(m, Path(f"{m}.gguf")) for m in pool.models])
        app = create_app(settings_from_sources(env={}, cli={"api_key": key}), pool, catalog=cat)
        raw: dict[str, Any] = {k: v.encode("latin-1") for k, v in headers.items()}
        # Transfer-Encoding/Content-Length are framing: the ASGI server owns them
        raw.pop("Transfer-Encoding", None)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
                return await c.request(method, path, headers=raw, content=body)
        finally:
            await app.llamasc.shutdown()

    r = asyncio.run(run())
    assert r.status_code != 500, r.text
    assert r.status_code < 600
    if r.status_code >= 400 and method != "HEAD":
        error = r.json()["error"]
        assert error["message"]
