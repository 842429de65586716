"""``/upstream/{model}/{path}``: raw pass-through to a model's own server (fake llama-server),
loading it on demand, any method, streaming, ids with slashes, aliases, auth."""

from __future__ import annotations

import httpx
from server_fakes import DaemonFactory, wait_until

from llamasc.server.passthrough import split_model


def test_longest_model_name_wins_and_slashes_are_allowed() -> None:
    names = ["org", "org/model", "m1"]
    assert split_model("org/model/v1/models", names) == ("org/model", "v1/models")
    assert split_model("org/other", names) == ("org", "other")
    assert split_model("m1", names) == ("m1", "")
    assert split_model("m10/x", names) is None


def test_passthrough_loads_the_model_and_relays_any_route(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"models": {"m1": {"aliases": ["org/first"]}}})
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert d.sidecars() == []
        r = c.get("/upstream/m1/props", params={"x": "1"})
        assert r.status_code == 200, r.text
        assert r.json()["fake"]["argv"]  # the fake llama-server's own /props
        (sidecar,) = d.sidecars()
        assert sidecar["model"] == "m1"
        r = c.get("/upstream/org/first/slots")  # an alias with a slash in it
        assert r.status_code == 200, r.text
        assert len(d.sidecars()) == 1  # the alias reached the same child
        body = {"messages": [], "max_tokens": 3, "stream": True}
        with c.stream("POST", "/upstream/m1/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            text = "".join(r.iter_text())
        assert text.rstrip().endswith("data: [DONE]")
        r = c.get("/upstream/ghost/health")
        assert r.status_code == 404
        assert "no such model" in r.json()["error"]["message"]


def test_passthrough_needs_the_api_key(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"api_keys": ["k1", "k2"]})
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.get("/upstream/m1/health")
        assert r.status_code == 401
        assert r.json()["error"]["message"]
        assert (
            c.get("/upstream/m1/health", headers={"Authorization": "Bearer k2"}).status_code == 200
        )


def test_a_client_that_leaves_stops_the_upstream_request(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"models": {"m1": {"env": {"FAKE_LLAMA_TOKEN_DELAY": "0.05"}}}})
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert c.get("/upstream/m1/health").status_code == 200
        slots = f"http://127.0.0.1:{d.sidecars()[0]['port']}/slots"
        body = {"messages": [], "max_tokens": 400, "stream": True}
        with c.stream("POST", "/upstream/m1/v1/chat/completions", json=body) as r:
            next(r.iter_raw())
            assert any(s["is_processing"] for s in httpx.get(slots).json())
        # closed before its end: the fake llama-server must stop generating
        wait_until(
            lambda: not any(s["is_processing"] for s in httpx.get(slots).json()),
            5,
            "the upstream slot to be released",
        )
        wait_until(lambda: d.sidecars()[0]["in_flight"] == 0, 5, "the lease to be released")
