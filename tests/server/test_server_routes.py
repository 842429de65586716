"""Every llama-server route through a real daemon over the fake llama-server: the request
arrives intact, the model comes from where the route table says, route-implied modes start
their own sidecar, slot actions refuse paths, the web UI's page and assets are relayed."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from server_fakes import DaemonFactory, chat, wait_until

from llamasc.server.dispatch import strip_model
from llamasc.server.routes import ROUTE_TABLE, ROUTES, is_asset, routes_for, table_markdown


def test_the_table_has_every_route_of_the_pinned_build() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "llama-server-routes.txt").read_text()
    pinned = {tuple(line.split()) for line in doc.splitlines() if line and line[0] != "#"}
    ours_elsewhere = {
        ("GET", "/health"), ("GET", "/v1/health"), ("GET", "/models"), ("GET", "/v1/models"),
        ("POST", "/models/load"), ("POST", "/models/unload"),
        # router mode's model management: llamasc's models come from its configuration
        ("POST", "/models"), ("DELETE", "/models"), ("GET", "/models/sse"),
    }  # fmt: skip
    relayed = {(r.method, r.path.replace("{id}", ":id_slot")) for r in ROUTE_TABLE}
    assert pinned - ours_elsewhere <= relayed, sorted(pinned - ours_elsewhere - relayed)
    assert len(ROUTE_TABLE) == len(relayed)  # one line per route
    assert "| POST | `/v1/messages` |" in table_markdown()


def test_lookup_and_assets() -> None:
    assert routes_for("/slots/3") is ROUTES["/slots/{id}"]
    assert routes_for("/sidecars") is None
    assert is_asset("/_app/immutable/start.js")
    assert not is_asset("/../etc/passwd.html")
    assert strip_model(b"model=m1&fail_on_no_slot=1") == b"fail_on_no_slot=1"


@pytest.mark.parametrize(
    "path",
    [
        "/infill",
        "/tokenize",
        "/detokenize",
        "/apply-template",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
        "/responses",
        "/chat/completions/input_tokens",
        "/predict",
        "/lora-adapters",
    ],
)
def test_post_routes_arrive_intact(daemon_factory: DaemonFactory, path: str) -> None:
    d = daemon_factory()
    body = {"model": "m2", "input_prefix": "def f(", "input_suffix": "):", "n": [1, "x"]}
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.post(path + "?keep=1", json=body, headers={"X-Custom": "yes", "x-api-key": "k"})
    assert r.status_code == 200, r.text
    echo = r.json()["echo"]
    assert echo["path"] == path
    assert echo["query"] == "keep=1"
    assert echo["body"] == body
    assert echo["headers"]["x-custom"] == "yes"
    assert "x-api-key" not in echo["headers"]  # llamasc's credential, never the child's
    assert [s["model"] for s in d.sidecars()] == ["m2"]


def test_get_routes_take_the_model_from_the_query_and_drop_it(
    daemon_factory: DaemonFactory,
) -> None:
    d = daemon_factory()
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.get("/lora-adapters", params={"model": "m1", "x": "1"})
        assert r.status_code == 200, r.text
        assert r.json()["echo"]["query"] == "x=1"
        r = c.get("/tools", headers={"X-Model-Id": "m2"})
        assert r.status_code == 200
        r = c.get("/lora-adapters")  # two models configured: say which
        assert r.status_code == 400
        assert "?model=ID" in r.json()["error"]["message"]
        assert "m1, m2" in r.json()["error"]["message"]
        r = c.put("/tokenize", json={})
        assert r.status_code == 405
        assert r.headers["allow"] == "POST"


def test_no_model_goes_to_the_only_model(daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    gguf = tmp_path / "only.gguf"
    gguf.write_bytes(b"GGUF")
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"only": str(gguf)}))
    d = daemon_factory(model_map_file=str(one))
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.post("/infill", json={"input_prefix": "a", "input_suffix": "b"})
        assert r.status_code == 200, r.text
        r = c.post("/v1/chat/completions", json=chat(None))
        assert r.status_code == 200, r.text
        r = c.get("/props")
        assert r.status_code == 200
    assert {s["model"] for s in d.sidecars()} == {"only"}


def test_embeddings_and_rerank_start_their_own_sidecar(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(max_sidecars="3")
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        r = c.post("/v1/embeddings", json={"model": "m1", "input": "hello"})
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["embedding"]
        r = c.post("/v1/embeddings", json={"model": "m1", "input": "again"})
        assert r.status_code == 200
        r = c.post("/v1/rerank", json={"model": "m1", "query": "q", "documents": ["a", "q b"]})
        assert r.status_code == 200, r.text
        assert len(r.json()["results"]) == 2
    flags = sorted(tuple(s["flags"]) for s in d.sidecars())
    assert len(flags) == 3  # chat, embedding, rerank: one sidecar each, reused
    assert sum("--embedding" in f for f in flags) == 1
    assert sum("--rerank" in f for f in flags) == 1


def test_embeddings_false_gets_llama_servers_501(
    daemon_factory: DaemonFactory,
) -> None:
    d = daemon_factory(file_data={"models": {"m1": {"embeddings": False}}})
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.post("/v1/embeddings", json={"model": "m1", "input": "hello"})
        assert r.status_code == 501
        assert "embeddings" in r.json()["error"]["message"]
        r = c.post("/v1/embeddings", json={"model": "m2", "input": "hello"})
        assert r.status_code == 200


def test_slots_and_metrics_never_start_a_sidecar(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(base_args='["-c", "512", "--metrics"]')
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.get("/slots", params={"model": "m1"})
        assert r.status_code == 400
        assert "model is not loaded" in r.json()["error"]["message"]
        assert d.sidecars() == []
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        r = c.get("/slots", params={"model": "m1"})
        assert r.status_code == 200, r.text
        assert r.json()[0]["n_ctx"] == 512
        r = c.get("/metrics", params={"model": "m1"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert "llamacpp:tokens_predicted_total 3" in r.text
        # plain /metrics is llamasc's own (not relayed, whatever the models)
        assert "llamacpp:" not in c.get("/metrics").text
        r = c.get("/slots", params={"model": "m2"})
        assert r.status_code == 400
    assert len(d.sidecars()) == 1


def test_slot_actions_refuse_paths(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory()
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        for bad in ("../x.bin", "/tmp/x.bin", "a\\b.bin", "sub/x.bin"):
            r = c.post("/slots/0?action=save", json={"model": "m1", "filename": bad})
            assert r.status_code == 400, bad
            assert "no path separators" in r.json()["error"]["message"]
        r = c.post("/slots/0?action=save", json={"model": "m1", "filename": "x.bin"})
        assert r.status_code == 200, r.text
        assert r.json()["echo"]["query"] == "action=save"
        assert r.json()["echo"]["body"]["filename"] == "x.bin"


def test_web_ui_page_and_assets(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory()
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.get("/")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert '<script src="/bundle.js">' in r.text
        r = c.get("/bundle.js")
        assert r.status_code == 200
        assert "fake ui" in r.text
        assert c.get("/no-such-thing").status_code == 404  # not an asset: llamasc's 404
    assert len(d.sidecars()) == 1  # the page and its asset from one sidecar


def test_x_api_key_is_accepted(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(api_key="sekrit")
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert c.post("/v1/messages", json={"model": "m1"}).status_code == 401
        r = c.post("/v1/messages", json={"model": "m1"}, headers={"x-api-key": "wrong"})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        r = c.post("/v1/messages", json={"model": "m1"}, headers={"x-api-key": "sekrit"})
        assert r.status_code == 200, r.text
        assert c.get("/v1/models", headers={"x-api-key": "sekrit"}).status_code == 200
        assert c.get("/v1/models", headers={"x-api-key": "nope"}).status_code == 401


def test_router_props_and_api_over_the_fake(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(base_args='["-c", "512", "--tags", "fast"]', max_sidecars="2")
    with httpx.Client(base_url=d.url, timeout=30) as c:
        props = c.get("/props").json()
        assert props["role"] == "router"  # what llama.cpp's web UI asks first
        assert props["max_instances"] == 2
        assert "fake" in c.get("/props", params={"model": "m1"}).json()  # the sidecar's own
        entries = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert entries["m1"]["status"] == {
            "value": "loaded",
            "args": ["--ctx-size", "512", "--tags", "fast"],
        }
        assert entries["m2"]["status"]["value"] == "unloaded"
        assert entries["m2"]["tags"] == ["fast"]
        assert c.post("/models/load", json={"model": "m2"}).json() == {"success": True}
        wait_until(
            lambda: (
                {m["id"]: m for m in c.get("/models").json()["data"]}["m2"]["status"]["value"]
                == "loaded"
            ),
            30,
            "m2 loaded",
        )
        r = c.post("/models/unload", json={"model": "m1"})
        assert r.json() == {"success": True}
        assert [s["model"] for s in d.sidecars()] == ["m2"]


def test_several_bind_addresses(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(bind="127.0.0.1,127.0.0.2:0")
    urls = [d.url, *(n.removeprefix("also listening on ") for n in d.daemon.info.notes
                     if n.startswith("also listening on "))]  # fmt: skip
    assert len(urls) == 2
    assert urls[1].startswith("http://127.0.0.2:")
    for url in urls:
        assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"
