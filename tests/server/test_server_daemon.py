"""A real daemon (uvicorn on 127.0.0.1, the real Pool, real child processes) against our fake
llama-server: what a client and an operator observe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from server_fakes import DaemonFactory, chat, free_port, free_port_range, http_ok, wait_until

from llamasc.process.reaper import ChildRecord


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sse_events(text: str) -> list[str]:
    return [ln[6:] for ln in text.split("\n") if ln.startswith("data: ")]


def test_chat_stream_and_flags_make_separate_sidecars(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory()
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.post("/v1/chat/completions", json=chat("m1", max_tokens=5))
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 5
        r = c.post(
            "/v1/chat/completions",
            json=chat(None, stream=True),
            headers={"X-Model-Id": "m1", "X-Agent-Flags": "--top-k 5"},
        )
        assert r.status_code == 200
        events = sse_events(r.text)
        assert events[-1] == "[DONE]"
        sidecars = d.sidecars()
        assert len(sidecars) == 2
        assert {s["model"] for s in sidecars} == {"m1"}
        with_flags = [s for s in sidecars if "--top-k" in s["flags"]]
        assert len(with_flags) == 1
        assert all(s["requests_served"] == 1 for s in sidecars)
        children = {p.pid for p in psutil.Process().children(recursive=True)}
        assert {s["pid"] for s in sidecars} <= children


def test_sidecars_are_serialised_once_with_every_field(daemon_factory: DaemonFactory) -> None:
    """/sidecars, /sidecars/{hash} and the pool's own snapshot are the same JSON, ready_at and
    restarts included (the route once listed the fields by hand and dropped those two)."""
    d = daemon_factory()
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        (listed,) = c.get("/sidecars").json()["sidecars"]
        one = c.get(f"/sidecars/{listed['hash'][:12]}").json()["sidecar"]
    assert listed["ready_at"] >= listed["started"]
    assert listed["restarts"] == 0
    assert listed["requests_served"] == 1
    assert listed["memory"].keys() == {"projected", "measured"}
    assert one.keys() == listed.keys()
    assert one["hash"] == listed["hash"]
    assert one["ready_at"] == listed["ready_at"]


def test_openai_client_against_fake(daemon_factory: DaemonFactory) -> None:
    import openai

    d = daemon_factory()
    with openai.OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0) as client:
        done = client.chat.completions.create(
            model="m2", messages=[{"role": "user", "content": "hi there"}], max_tokens=3
        )
        assert done.choices[0].message.content
        pieces = [
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model="m2",
                messages=[{"role": "user", "content": "hi there"}],
                max_tokens=3,
                stream=True,
            )
            if chunk.choices
        ]
        assert "".join(pieces).strip()
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="zz", messages=[], max_tokens=1)


def test_capacity_503_with_retry_after(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(
        {"models": {"m1": {"env": {"FAKE_LLAMA_TOKEN_DELAY": "0.1"}}}},
        max_sidecars="1",
        queue_timeout="0.5",
    )
    with httpx.Client(base_url=d.url, timeout=30) as c:
        with c.stream("POST", "/v1/chat/completions", json=chat("m1", 40, stream=True)) as long:
            assert long.status_code == 200
            chunks = long.iter_raw()  # keep a reference: a dropped iterator closes the stream
            next(chunks)  # m1 is now busy for seconds
            t0 = time.monotonic()
            r = c.post("/v1/chat/completions", json=chat("m2"))
            waited = time.monotonic() - t0
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "capacity"
            assert int(r.headers["retry-after"]) >= 1
            assert 0.4 <= waited < 5
        # once m1 is idle it can be evicted for m2
        assert c.post("/v1/chat/completions", json=chat("m2")).status_code == 200
        assert [s["model"] for s in d.sidecars()] == ["m2"]


def test_readiness_timeout_504_and_spawn_failure_502(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(
        {
            "models": {
                "m1": {"env": {"FAKE_LLAMA_HANG": "1"}},
                "m2": {"env": {"FAKE_LLAMA_CRASH_ON_START": "1"}},
            }
        },
        health_timeout="1",
    )
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.post("/v1/chat/completions", json=chat("m1"))
        assert r.status_code == 504, r.text
        assert r.json()["error"]["source"] == "upstream"
        r = c.post("/v1/chat/completions", json=chat("m2"))
        assert r.status_code == 502, r.text
        err = r.json()["error"]
        assert err["code"] == "spawn_failed"
        assert err["source"] == "upstream"
        assert "exit" in err["message"]
        assert any("model loading error" in line for line in err["details"])
    wait_until(lambda: d.sidecars() == [], 10, "failed sidecars to be gone")


def test_upstream_death_mid_stream_then_respawn(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"models": {"m1": {"env": {"FAKE_LLAMA_TOKEN_DELAY": "0.05"}}}})
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1", 2)).status_code == 200
        pid = d.sidecars()[0]["pid"]
        body = b""
        with c.stream("POST", "/v1/chat/completions", json=chat("m1", 200, stream=True)) as r:
            assert r.status_code == 200
            chunks = r.iter_raw()
            body += next(chunks)
            os.kill(pid, signal.SIGKILL)
            for chunk in chunks:  # must end, not hang
                body += chunk
        events = sse_events(body.decode())
        assert "[DONE]" not in events
        last = json.loads(events[-1])
        assert last["error"]["source"] == "upstream"
        wait_until(lambda: not alive(pid), 5, "the killed child to be reaped")
        r = wait_until(
            lambda: (
                (resp := c.post("/v1/chat/completions", json=chat("m1", 2))).status_code == 200
                and resp
            ),
            10,
            "a respawned sidecar to answer",
        )
        assert r.json()["fake"]["pid"] != pid


def test_client_disconnect_cancels_upstream(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"models": {"m1": {"env": {"FAKE_LLAMA_TOKEN_DELAY": "0.05"}}}})
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1", 1)).status_code == 200
        port = d.sidecars()[0]["port"]
        slots = f"http://127.0.0.1:{port}/slots"
        with c.stream("POST", "/v1/chat/completions", json=chat("m1", 400, stream=True)) as r:
            chunks = r.iter_raw()
            next(chunks)
            assert any(s["is_processing"] for s in httpx.get(slots).json())
        # the response is closed before its end: llama-server must stop generating
        wait_until(
            lambda: not any(s["is_processing"] for s in httpx.get(slots).json()),
            5,
            "the upstream slot to be released",
        )
        wait_until(lambda: d.sidecars()[0]["in_flight"] == 0, 5, "in_flight to drop to 0")


def test_shutdown_stops_every_child(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory()
    with httpx.Client(base_url=d.url, timeout=30) as c:
        for model in ("m1", "m2"):
            assert c.post("/v1/chat/completions", json=chat(model)).status_code == 200
    pids = [s["pid"] for s in d.sidecars()]
    assert len(pids) == 2
    assert all(alive(p) for p in pids)
    d.stop()
    assert not any(alive(p) for p in pids)
    assert not http_ok(d.url + "/health")


def test_restart_reaps_leftovers_and_nothing_else(
    daemon_factory: DaemonFactory, fake_llama_server_bin: Path, tmp_path: Path
) -> None:
    def spawn() -> tuple[subprocess.Popen[bytes], list[str]]:
        argv = [str(fake_llama_server_bin), "-m", "x.gguf", "--port", str(free_port())]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc, argv

    leftover, _ = spawn()
    stranger, _ = spawn()
    try:
        # the wrapper script execs the fake: record the process as it runs after the exec
        wait_until(
            lambda: any("fake_llama_server" in a for a in psutil.Process(leftover.pid).cmdline()),
            10,
            "the leftover to exec",
        )
        record = ChildRecord.of(
            leftover.pid, psutil.Process(leftover.pid).create_time(), 1, "k" * 64,
            psutil.Process(leftover.pid).cmdline(),
        )  # fmt: skip
        wrong = ChildRecord.of(stranger.pid, 0.0, 2, "j" * 64, ["x", "--other"])
        state = tmp_path / "home" / "sidecars.json"
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(
            json.dumps(
                {
                    "version": 1,
                    "daemon": {"pid": 999999999, "create_time": 0.0},
                    "children": [vars(record), vars(wrong)],
                }
            )
        )
        d = daemon_factory(state_file=str(state))
        wait_until(lambda: leftover.poll() is not None, 5, "the leftover to be reaped")
        assert stranger.poll() is None
        assert http_ok(d.url + "/health")
    finally:
        for p in (leftover, stranger):
            if p.poll() is None:
                p.kill()
            p.wait(10)


def test_port_in_use_is_skipped(daemon_factory: DaemonFactory) -> None:
    import socket

    lo, _ = free_port_range()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", lo))
        busy.listen()
        d = daemon_factory(port_range=f"{lo}-{lo + 5}")
        with httpx.Client(base_url=d.url, timeout=30) as c:
            assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        port = d.sidecars()[0]["port"]
        assert port != lo
        assert lo < port <= lo + 5


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux-only")
def test_kill_9_of_daemon_leaves_no_child(
    fake_llama_server_bin: Path, tmp_path: Path, isolated_env: Path
) -> None:
    model = tmp_path / "m1.gguf"
    model.write_bytes(b"GGUF")
    (tmp_path / "map.json").write_text(json.dumps({"m1": str(model)}))
    port, (lo, _) = free_port(), free_port_range()
    env = {
        **os.environ,
        "LLAMA_SERVER_BIN": str(fake_llama_server_bin),
        "MODEL_DIR_MAP_FILE": str(tmp_path / "map.json"),
        "LLAMA_SIDECAR_BIND": f"127.0.0.1:{port}",
        "PORT_RANGE": f"{lo}-{lo + 20}",
        "BASE_ARGS": '["-c", "512"]',
        "LOG_LEVEL": "WARNING",
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "llamasc", "serve"], env=env, stdout=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/health"), 30, "the daemon")
        assert httpx.post(url + "/v1/chat/completions", json=chat("m1"), timeout=30).is_success
        pid = httpx.get(url + "/sidecars").json()["sidecars"][0]["pid"]
        assert alive(pid)
        daemon.kill()
        daemon.wait(10)
        wait_until(lambda: not alive(pid), 2, "the child to die with its daemon")
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.wait(10)
