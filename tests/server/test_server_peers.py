"""Peers: two llamasc daemons on loopback, one forwarding a model to the other."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path

import httpx
from server_fakes import DaemonFactory, free_port


def test_requests_for_a_peers_model_are_forwarded_with_streaming(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    far = tmp_path / "far.gguf"
    far.write_bytes(b"GGUF")
    remote = daemon_factory({"models": {"far": {"path": str(far)}}}, api_key="remote-key")
    front = daemon_factory(
        {"peers": {"box": {"proxy": remote.url, "models": ["far"], "api_key": "remote-key"}}},
        api_key="front-key",
    )
    key = {"Authorization": "Bearer front-key"}
    with httpx.Client(base_url=front.url, timeout=30) as c:
        listed = {e["id"]: e for e in c.get("/v1/models", headers=key).json()["data"]}
        assert listed["box/far"]["owned_by"] == "box"
        body = {"model": "far", "messages": [], "max_tokens": 3}
        r = c.post("/v1/chat/completions", json=body, headers=key)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 3
        # the qualified name works too; the peer is sent the name it knows
        with c.stream(
            "POST",
            "/v1/chat/completions",
            json={**body, "model": "box/far", "stream": True},
            headers=key,
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"
    # the remote served it: its own sidecar for "far"
    assert [s["model"] for s in httpx.get(
        remote.url + "/sidecars", headers={"Authorization": "Bearer remote-key"}
    ).json()["sidecars"]] == ["far"]  # fmt: skip
    front_sidecars = httpx.get(front.url + "/sidecars", headers=key).json()["sidecars"]
    assert front_sidecars == []  # nothing ran on the front host


def test_a_peer_that_does_not_answer_is_a_502_naming_it(daemon_factory: DaemonFactory) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    front = daemon_factory(
        {"peers": {"gone-box": {"proxy": dead, "models": ["ghost"], "connect_timeout": 2}}}
    )
    t0 = time.monotonic()
    r = httpx.post(
        front.url + "/v1/chat/completions", json={"model": "ghost", "messages": []}, timeout=30
    )
    assert time.monotonic() - t0 < 10
    assert r.status_code == 502
    err = r.json()["error"]
    assert "peer 'gone-box'" in err["message"]
    assert err["type"] == "upstream_error"


def test_a_peer_that_never_accepts_times_out_within_connect_timeout(
    daemon_factory: DaemonFactory,
) -> None:
    # a listening socket whose backlog is full and never accepted: new connections hang
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(lsock.getsockname())
        fillers.append(s)
    port = lsock.getsockname()[1]
    try:
        front = daemon_factory(
            {"peers": {"slow": {"proxy": f"http://127.0.0.1:{port}", "models": ["m"],
                                "connect_timeout": 1}}}
        )  # fmt: skip
        t0 = time.monotonic()
        r = httpx.post(
            front.url + "/v1/chat/completions", json={"model": "m", "messages": []}, timeout=30
        )
        elapsed = time.monotonic() - t0
        assert r.status_code == 502, r.text
        assert "peer 'slow'" in r.json()["error"]["message"]
        assert elapsed < 8
    finally:
        for s in fillers:
            s.close()
        lsock.close()
