"""The app in-process (httpx.ASGITransport) over a fake pool whose leases point at our fake
llama-server: routing, model selection, flags, every error envelope, the admin routes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from server_fakes import AppFactory, FakePool, chat

from llamasc.errors import (
    CapacityError,
    ReadinessTimeoutError,
    ShuttingDownError,
    SpawnError,
)

pytestmark = pytest.mark.anyio


def assert_envelope(r: httpx.Response, status: int, code: str, source: str = "llamasc") -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code
    assert err["source"] == source
    assert isinstance(err["type"], str)
    assert isinstance(err["message"], str)
    assert err["message"]
    return str(err["message"])


async def test_chat_completion_is_relayed(client: httpx.AsyncClient, fake_pool: FakePool) -> None:
    r = await client.post("/v1/chat/completions", json=chat("m1", max_tokens=4))
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["usage"]["completion_tokens"] == 4
    assert fake_pool.leases == [("m1", ())]
    # the answer's timings were captured for `llamasc ps`
    info = next(iter(fake_pool.infos.values()))
    assert info.last_timings is not None
    assert info.last_timings["predicted_n"] == 4


async def test_streaming_is_relayed_with_done(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat("m1", stream=True))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [ln[6:] for ln in r.text.split("\n") if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


@pytest.mark.parametrize(
    "path",
    ["/v1/completions", "/completion", "/completions", "/chat/completions"],
)
async def test_other_completion_routes(client: httpx.AsyncClient, path: str) -> None:
    r = await client.post(path, json={"model": "m2", "prompt": "hello", "max_tokens": 2})
    assert r.status_code == 200, r.text


async def test_header_model_wins_over_body(client: httpx.AsyncClient, fake_pool: FakePool) -> None:
    r = await client.post("/v1/chat/completions", json=chat("m1"), headers={"X-Model-Id": "m2"})
    assert r.status_code == 200
    assert fake_pool.leases == [("m2", ())]


async def test_header_model_needs_no_json_body(
    client: httpx.AsyncClient, fake_pool: FakePool
) -> None:
    # with X-Model-Id the body is forwarded as is: llama-server judges it
    r = await client.post(
        "/v1/chat/completions", content=b"{not json", headers={"X-Model-Id": "m1"}
    )
    assert r.status_code == 400
    assert "source" not in r.json()["error"]  # llama-server's own envelope, unchanged
    assert fake_pool.leases == [("m1", ())]


async def test_agent_flags_are_canonical_and_key_the_lease(
    client: httpx.AsyncClient, fake_pool: FakePool
) -> None:
    for header in ("--top-k 20 -c 1024", "-c 1024 --top_k 20"):
        r = await client.post(
            "/v1/chat/completions", json=chat("m1"), headers={"X-Agent-Flags": header}
        )
        assert r.status_code == 200
    assert fake_pool.leases[0] == fake_pool.leases[1]
    assert fake_pool.leases[0][1] == ("--ctx-size", "1024", "--top-k", "20")
    assert len(fake_pool.infos) == 1


async def test_invalid_flags_list_every_problem(
    client: httpx.AsyncClient, fake_pool: FakePool
) -> None:
    r = await client.post(
        "/v1/chat/completions",
        json=chat("m1"),
        headers={"X-Agent-Flags": "--port 9 --top-k many --no-such-flag"},
    )
    msg = assert_envelope(r, 400, "invalid_flags")
    details = r.json()["error"]["details"]
    assert len(details) == 3
    for needle in ("--port", "--top-k", "--no-such-flag"):
        assert needle in msg
        assert any(needle in d for d in details)
    assert fake_pool.leases == []


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{bad json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "empty request body"),
        (b'{"messages": []}', "no model"),
        (b'{"model": 7}', "non-empty string"),
        (b'{"model": "  "}', "non-empty string"),
        (b"[" * 100000, "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
    ],
)
async def test_bad_bodies_are_400(client: httpx.AsyncClient, content: bytes, needle: str) -> None:
    r = await client.post("/v1/chat/completions", content=content)
    assert needle in assert_envelope(r, 400, "invalid_request")


async def test_unknown_model_is_404_listing_known(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat("nope"))
    msg = assert_envelope(r, 404, "model_not_found")
    assert "m1" in msg
    assert "m2" in msg


async def test_body_over_limit_is_413(make_app: AppFactory, fake_pool: FakePool) -> None:
    app = make_app(body_limit="2KiB")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://x") as c:
        big = json.dumps(chat("m1", pad="x" * 4096)).encode()
        r = await c.post("/v1/chat/completions", content=big)
        assert_envelope(r, 413, "body_too_large")

        async def chunks() -> Any:  # no Content-Length: counted while reading
            for _ in range(8):
                yield b"x" * 512

        r = await c.post("/v1/chat/completions", content=chunks())
        assert_envelope(r, 413, "body_too_large")
        ok = await c.post("/v1/chat/completions", json=chat("m1"))
        assert ok.status_code == 200
    assert len(fake_pool.leases) == 1


@pytest.mark.parametrize(
    ("error", "status", "code", "source"),
    [
        (CapacityError("all busy", retry_after=7), 503, "capacity", "llamasc"),
        (SpawnError("exited with code 1: bad magic", exit_code=1), 502, "spawn_failed", "upstream"),
        (ReadinessTimeoutError("not ready in 3 s"), 504, "readiness_timeout", "upstream"),
        (ShuttingDownError("bye"), 503, "shutting_down", "llamasc"),
    ],
)
async def test_pool_errors_map_to_status(
    client: httpx.AsyncClient,
    fake_pool: FakePool,
    error: Exception,
    status: int,
    code: str,
    source: str,
) -> None:
    fake_pool.fail = error  # type: ignore[assignment]
    r = await client.post("/v1/chat/completions", json=chat("m1"))
    assert_envelope(r, status, code, source)
    if isinstance(error, CapacityError):
        assert r.headers["retry-after"] == "7"


async def test_wrong_method_and_unknown_route(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/chat/completions")
    assert_envelope(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    r = await client.post("/health")
    assert_envelope(r, 405, "method_not_allowed")
    r = await client.get("/v2/nothing")
    assert_envelope(r, 404, "not_found")


async def test_api_key(make_app: AppFactory) -> None:
    app = make_app(api_key="s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://x") as c:
        assert (await c.get("/health")).status_code == 200  # open, for probes
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "s3cret"}):
            r = await c.post("/v1/chat/completions", json=chat("m1"), headers=headers)
            assert_envelope(r, 401, "invalid_api_key")
            assert_envelope(await c.get("/sidecars", headers=headers), 401, "invalid_api_key")
            assert_envelope(await c.get("/nowhere", headers=headers), 401, "invalid_api_key")
        good = {"Authorization": "Bearer s3cret"}
        r = await c.post("/v1/chat/completions", json=chat("m1"), headers=good)
        assert r.status_code == 200
        assert (await c.get("/sidecars", headers=good)).status_code == 200


async def test_draining_daemon_refuses_new_requests(
    make_app: AppFactory, fake_pool: FakePool
) -> None:
    app = make_app()
    await app.llamasc.shutdown()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://x") as c:
        r = await c.post("/v1/chat/completions", json=chat("m1"))
        assert_envelope(r, 503, "shutting_down")
        health = await c.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "shutting_down"
    assert fake_pool.closed == 1
    assert fake_pool.leases == []


async def test_health_models_and_sidecars(client: httpx.AsyncClient, fake_pool: FakePool) -> None:
    await client.post("/v1/chat/completions", json=chat("m1"), headers={"X-Agent-Flags": "-c 64"})
    health = (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["sidecars"] == 1
    assert health["max_sidecars"] == 2
    assert {"version", "uptime", "llama_server"} <= set(health)

    models = (await client.get("/v1/models")).json()
    assert models["object"] == "list"
    by_id = {m["id"]: m for m in models["data"]}
    assert set(by_id) == {"m1", "m2"}
    assert [s["flags"] for s in by_id["m1"]["sidecars"]] == [["--ctx-size", "64"]]
    assert by_id["m2"]["sidecars"] == []

    sidecars = (await client.get("/sidecars")).json()["sidecars"]
    assert len(sidecars) == 1
    s = sidecars[0]
    assert s["model"] == "m1"
    assert s["requests_served"] == 1
    assert s["in_flight"] == 0
    assert s["last_timings"]["predicted_n"] == 3


async def test_sidecar_logs_and_stop(client: httpx.AsyncClient, fake_pool: FakePool) -> None:
    await client.post("/v1/chat/completions", json=chat("m1"))
    await client.post("/v1/chat/completions", json=chat("m2"))
    key = next(k for k, i in fake_pool.infos.items() if i.model == "m1")
    logs = await client.get(f"/sidecars/{key[:8]}/logs", params={"n": 5})
    assert logs.status_code == 200
    assert logs.json()["lines"] == [f"line {i}" for i in range(5)]
    for bad in ("abc", "xyz12345", "0" * 65):
        assert_envelope(await client.get(f"/sidecars/{bad}/logs"), 400, "invalid_request")
    assert_envelope(
        await client.get(f"/sidecars/{key[:8]}/logs", params={"n": "lots"}), 400, "invalid_request"
    )
    stopped = (await client.delete(f"/sidecars/{key[:10]}")).json()["stopped"]
    assert [s["hash"] for s in stopped] == [key]
    assert_envelope(await client.delete(f"/sidecars/{key[:10]}"), 404, "not_found")
    assert_envelope(await client.delete("/sidecars"), 400, "invalid_request")
    assert_envelope(
        await client.delete("/sidecars", params={"model": "zz"}), 404, "model_not_found"
    )
    gone = (await client.delete("/sidecars", params={"model": "m2"})).json()["stopped"]
    assert [s["model"] for s in gone] == ["m2"]
    assert (await client.delete("/sidecars", params={"all": "1"})).json()["stopped"] == []


async def test_props_are_those_of_the_models_sidecar(
    make_app: AppFactory, client: httpx.AsyncClient, fake_pool: FakePool
) -> None:
    flags = {"X-Agent-Flags": "--top-k 20"}
    r = await client.get("/props", params={"model": "m2"}, headers=flags)
    assert r.status_code == 200, r.text
    assert r.json()["total_slots"] >= 1
    assert fake_pool.leases == [("m2", ("--top-k", "20"))]
    r = await client.get("/props", headers={"X-Model-Id": "m1"})
    assert r.status_code == 200
    assert fake_pool.leases[-1] == ("m1", ())
    # several models and none named: llama.cpp router's own answer (its web UI asks this)
    r = await client.get("/props")
    assert r.status_code == 200
    assert r.json()["role"] == "router"
    assert fake_pool.leases[-1] == ("m1", ())
    assert_envelope(await client.get("/props", params={"model": "nope"}), 404, "model_not_found")
    r = await client.post("/props", json={"model": "m1"})  # relayed (llama-server's --props)
    assert r.status_code == 200
    r = await client.put("/props", json={"model": "m1"})
    assert_envelope(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, POST"
    # one model: it is the default
    one = FakePool(fake_pool.base_url, ["solo"])
    transport = httpx.ASGITransport(app=make_app(pool=one))
    async with httpx.AsyncClient(transport=transport, base_url="http://llamasc") as c:
        assert (await c.get("/props")).status_code == 200
    assert one.leases == [("solo", ())]


async def test_the_lifespan_is_the_daemon_s_one_start_path(
    make_app: AppFactory, fake_pool: FakePool
) -> None:
    """Under any ASGI server with lifespan, the app starts the pool and stops it on the way
    out: the same ``DaemonState.running`` that ``llamasc serve`` enters itself."""
    app = make_app()
    async with app.router.lifespan_context(app):
        assert fake_pool.started == 1
        assert not app.llamasc.draining
    assert fake_pool.closed == 1
    assert app.llamasc.draining
