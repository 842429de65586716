"""Web pages and the daemon: CORS only for listed origins, upstream CORS never relayed, and
the checks every request passes (two Authorization headers, the last-resort 500)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from server_fakes import AppFactory, FakePool, chat

from llamasc.config.settings import settings_from_sources
from llamasc.errors import ConfigError
from llamasc.server.cors import split_cors_origins
from llamasc.server.daemon import absorb_cors_origins

pytestmark = pytest.mark.anyio

EVIL = "http://evil.example"
GOOD = "http://localhost:3000"


def client_for(app: Any, host: str = "llamasc") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


def assert_envelope(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == code


async def test_upstream_cors_headers_are_never_relayed(client: httpx.AsyncClient) -> None:
    # the fake llama-server, like the real one, answers with Access-Control-Allow-Origin: *
    r = await client.post("/v1/chat/completions", json=chat("m1"))
    assert r.status_code == 200
    assert not [k for k in r.headers if k.lower().startswith("access-control-")]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/chat/completions", {"content": b'{"model": "m1"}',
                                          "headers": {"content-type": "text/plain"}}),
        ("POST", "/v1/chat/completions", {"json": chat("m1")}),
        ("GET", "/props?model=m1", {}),
        ("GET", "/sidecars", {}),
        ("DELETE", "/sidecars/abcdef12", {}),
    ],
)  # fmt: skip
async def test_a_page_of_an_unlisted_origin_is_refused_before_any_work(
    client: httpx.AsyncClient, fake_pool: FakePool, method: str, path: str, kwargs: Any
) -> None:
    headers = {"origin": EVIL, **kwargs.pop("headers", {})}
    r = await client.request(method, path, headers=headers, **kwargs)
    assert_envelope(r, 403, "forbidden_origin")
    assert "--cors-origins" in r.json()["error"]["message"]
    assert "access-control-allow-origin" not in r.headers
    assert fake_pool.leases == []  # no sidecar was started for it


async def test_preflight_is_answered_for_listed_origins_only(make_app: AppFactory) -> None:
    async with client_for(make_app(cors_origins=f"{GOOD}, https://app.example")) as c:
        pre = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, x-agent-flags, authorization",
        }
        r = await c.options("/v1/chat/completions", headers={"origin": GOOD, **pre})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == GOOD
        assert "x-agent-flags" in r.headers["access-control-allow-headers"].lower()
        assert "POST" in r.headers["access-control-allow-methods"]
        r = await c.options("/v1/chat/completions", headers={"origin": EVIL, **pre})
        assert_envelope(r, 403, "forbidden_origin")
        assert "access-control-allow-origin" not in r.headers


async def test_a_listed_origin_gets_exactly_our_cors_headers(
    make_app: AppFactory, fake_pool: FakePool
) -> None:
    async with client_for(make_app(cors_origins=GOOD)) as c:
        r = await c.post("/v1/chat/completions", json=chat("m1"), headers={"origin": GOOD})
        assert r.status_code == 200, r.text
        assert r.headers.get_list("access-control-allow-origin") == [GOOD]
        r = await c.get("/v1/models", headers={"origin": GOOD})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == GOOD


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x", None]
)
async def test_a_page_must_send_json_bodies_as_json(
    make_app: AppFactory, ctype: str | None
) -> None:
    async with client_for(make_app(cors_origins=GOOD)) as c:
        headers = {"origin": GOOD}
        if ctype is not None:
            headers["content-type"] = ctype
        r = await c.post("/v1/chat/completions", content=b'{"model":"m1"}', headers=headers)
        assert_envelope(r, 403, "forbidden_origin")
        assert "application/json" in r.json()["error"]["message"]
        ok = {**headers, "content-type": "application/json; charset=utf-8"}
        r = await c.post("/v1/chat/completions", content=b'{"model":"m1"}', headers=ok)
        assert r.status_code == 200


async def test_the_daemons_own_loopback_page_is_not_cross_origin(make_app: AppFactory) -> None:
    app = make_app()
    async with client_for(app, host="127.0.0.1:8402") as c:
        r = await c.get("/health", headers={"origin": "http://127.0.0.1:8402"})
        assert r.status_code == 200
    # a page reached by DNS rebinding has its own name as Host: still another origin
    async with client_for(app, host="rebind.example:8402") as c:
        r = await c.get("/health", headers={"origin": "http://rebind.example:8402"})
        assert_envelope(r, 403, "forbidden_origin")


async def test_requests_without_origin_are_unaffected(make_app: AppFactory) -> None:
    async with client_for(make_app()) as c:
        r = await c.post(
            "/v1/chat/completions",
            content=b'{"model":"m1"}',
            headers={"content-type": "text/plain"},
        )
        assert r.status_code == 200


def test_cors_origins_come_from_flag_env_and_file() -> None:
    s = settings_from_sources(env={"LLAMASC_CORS_ORIGINS": "HTTP://LocalHost:3000/,https://a.b"})
    assert s.cors_origins == ("http://localhost:3000", "https://a.b")
    s = settings_from_sources(env={}, file_data={"cors_origins": ["http://x.y:1"]})
    assert s.cors_origins == ("http://x.y:1",)
    assert settings_from_sources(env={}).cors_origins == ()
    with pytest.raises(ConfigError) as err:
        settings_from_sources(env={}, cli={"cors_origins": "localhost:3000/path"})
    assert str(err.value).startswith("--cors-origins: must be a comma-separated list of origins")


def test_cors_origins_in_base_args_are_llamascs_not_the_childrens() -> None:
    assert split_cors_origins(["-c", "512", "--cors-origins", "http://a.b,http://c.d"]) == (
        ("-c", "512"),
        ("http://a.b", "http://c.d"),
    )
    s = settings_from_sources(
        env={"BASE_ARGS": '["--cors-origins=http://a.b", "-c", "512"]'},
        cli={"cors_origins": "http://x.y"},
    )
    s = absorb_cors_origins(s)
    assert s.base_args == ("-c", "512")
    assert s.cors_origins == ("http://x.y", "http://a.b")


# ---------------------------------------------------------------- every request's checks


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/sidecars", "/health"])
@pytest.mark.parametrize("key", [None, "k"])
async def test_two_authorization_headers_are_refused_everywhere(
    make_app: AppFactory, path: str, key: str | None
) -> None:
    async with client_for(make_app(api_key=key)) as c:
        headers = [("authorization", "Bearer k"), ("authorization", "Bearer other")]
        method = "POST" if path.startswith("/v1") else "GET"
        r = await c.request(method, path, headers=headers, json=chat("m1"))
        assert_envelope(r, 400, "invalid_request")
        assert "Authorization" in r.json()["error"]["message"]


class _BuggyPool(FakePool):
    @asynccontextmanager
    async def lease(self, model_id: str, user_flags: Any) -> AsyncIterator[Any]:
        raise KeyError("a bug")
        yield  # pragma: no cover

    def sidecars(self) -> Any:
        raise ZeroDivisionError("a bug")


async def test_a_bug_is_an_openai_shaped_500_not_a_plain_text_one(
    make_app: AppFactory, fake_pool: FakePool, caplog: pytest.LogCaptureFixture
) -> None:
    pool = _BuggyPool(fake_pool.base_url)
    async with client_for(make_app(pool)) as c:
        r = await c.post("/v1/chat/completions", json=chat("m1"))
        assert_envelope(r, 500, "internal_error")
        assert "a bug" not in r.text  # details stay in the log
        assert "KeyError" in caplog.text
        r = await c.post(
            "/v1/chat/completions", json=chat("m1"), headers={"x-agent-flags": "[" * 30000}
        )
        assert_envelope(r, 400, "invalid_flags")
        r = await c.post(
            "/v1/chat/completions",
            json=chat("m1"),
            headers={"x-agent-flags": "--top-k " + "1" * 5000},
        )
        assert_envelope(r, 400, "invalid_flags")
