"""Metrics, events and history of a real daemon (uvicorn, the real pool) over the fake
llama-server: every value checked after known requests."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_fakes import DaemonFactory, chat, wait_until

from llamasc.observe.view import parse_sse

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **headers: str) -> Samples:
    resp = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def names(samples: Samples) -> set[str]:
    return {n for n, _ in samples}


class EventReader:
    """Reads /api/events in a thread, keeping every (type, data) in order."""

    def __init__(self, url: str, **params: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, params), daemon=True)
        self._thread.start()
        wait_until(lambda: self.events, 10, "the first event")

    def _run(self, url: str, params: dict[str, str]) -> None:
        timeout = httpx.Timeout(10, read=None)
        try:
            with httpx.stream("GET", url + "/api/events", params=params, timeout=timeout) as r:
                assert r.status_code == 200
                for item in parse_sse(r.iter_lines()):
                    self.events.append(item)
                    if self._stop.is_set():
                        return
        except httpx.HTTPError:  # the daemon stopped at the end of the test
            return

    def types(self) -> list[str]:
        return [t for t, _ in self.events]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == type_]


@pytest.fixture
def daemon(daemon_factory: DaemonFactory) -> Any:
    return daemon_factory(max_sidecars="1")


def test_metrics_after_known_requests(daemon: Any) -> None:
    url = daemon.url
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(3):
            assert c.post("/v1/chat/completions", json=chat("m1", max_tokens=4)).status_code == 200
        with c.stream(
            "POST", "/v1/chat/completions", json=chat("m1", max_tokens=4, stream=True)
        ) as r:
            assert r.status_code == 200
            r.read()
        assert c.post("/v1/chat/completions", json=chat("nope")).status_code == 404
        # a swap: m2 evicts m1 (one slot)
        assert (
            c.post(
                "/v1/completions", json={"model": "m2", "prompt": "hi", "max_tokens": 2}
            ).status_code
            == 200
        )
    sidecar = next(s["hash"][:8] for s in daemon.sidecars() if s["model"] == "m2")
    got = scrape(url)
    chat_route = "/v1/chat/completions"
    assert value(got, "llamasc_requests_total", model="m1", route=chat_route, status="200") == 4
    assert value(got, "llamasc_requests_total", model="nope", route=chat_route, status="404") == 1
    assert (
        value(got, "llamasc_requests_total", model="m2", route="/v1/completions", status="200") == 1
    )
    assert value(got, "llamasc_request_seconds_count", model="m1", route=chat_route) == 4
    assert value(got, "llamasc_time_to_first_token_seconds_count", model="m1") == 4
    assert value(got, "llamasc_queue_wait_seconds_count", model="m1") == 4
    # the fake counts each word of the prompt as a token; 4 answers x 4 tokens
    assert value(got, "llamasc_completion_tokens_total", model="m2", sidecar=sidecar) == 2
    m1_completion = sum(
        v for (n, labels), v in got.items()
        if n == "llamasc_completion_tokens_total" and ("model", "m1") in labels
    )  # fmt: skip
    assert m1_completion == 16
    assert value(got, "llamasc_decode_tokens_per_second", model="m2", sidecar=sidecar) > 0
    assert value(got, "llamasc_prompt_tokens_per_second", model="m2", sidecar=sidecar) > 0
    assert value(got, "llamasc_model_loads_total", model="m1", reason="request") == 1
    assert value(got, "llamasc_model_loads_total", model="m2", reason="request") == 1
    assert value(got, "llamasc_model_load_seconds_count", model="m1") == 1
    assert value(got, "llamasc_evictions_total", model="m1", reason="lru") == 1
    assert value(got, "llamasc_sidecars", state="ready") == 1
    assert value(got, "llamasc_sidecars", state="starting") == 0
    assert ("llamasc_waiting_requests", ()) not in got
    assert (
        value(got, "llamasc_sidecar_memory_bytes", sidecar=sidecar, device="host", kind="actual")
        > 0
    )
    assert value(got, "llamasc_host_memory_bytes", kind="total") > 0
    assert value(got, "llamasc_sidecar_restarts_total", model="m1") == 0
    if not shutil.which("nvidia-smi") and not shutil.which("rocm-smi"):
        assert not any(n.startswith("llamasc_gpu_") for n in names(got))  # absent, not zero


def test_waiting_and_in_flight_while_a_request_runs(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(
        {"models": {"m1": {"env": {"FAKE_LLAMA_TOKEN_DELAY": "0.05"}}}},
        max_sidecars="1",
        queue_timeout="60",
    )
    url = d.url
    statuses: list[int] = []

    def run(model: str, tokens: int) -> None:
        body = chat(model, max_tokens=tokens, stream=True)
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
            r.read()
            statuses.append(r.status_code)

    slow = threading.Thread(target=run, args=("m1", 60))
    slow.start()
    wait_until(
        lambda: value(scrape(url), "llamasc_in_flight_requests", model="m1") == 1,
        20,
        "m1 in flight",
    )
    waiter = threading.Thread(target=run, args=("m2", 2))
    waiter.start()  # the one slot is busy: m2 waits for it
    wait_until(
        lambda: value(scrape(url), "llamasc_waiting_requests", model="m2") == 1, 20, "m2 waiting"
    )
    slow.join(60)
    waiter.join(60)
    assert statuses == [200, 200]
    got = scrape(url)
    assert value(got, "llamasc_in_flight_requests", model="m1") == 0
    assert value(got, "llamasc_waiting_requests", model="m2") == 0
    assert value(got, "llamasc_queue_wait_seconds_sum", model="m2") > 0.1
    assert value(got, "llamasc_evictions_total", model="m1", reason="lru") == 1


def test_crashes_restarts_and_failed_loads(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(
        {
            "models": {
                "m1": {"env": {"FAKE_LLAMA_CRASH_AFTER_REQUESTS": "1"}},
                "m2": {"env": {"FAKE_LLAMA_CRASH_ON_START": "1"}},
            }
        }
    )
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        wait_until(lambda: not d.sidecars(), 10, "the crashed child to be gone")
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        assert c.post("/v1/chat/completions", json=chat("m2")).status_code == 502
    got = scrape(d.url)
    assert value(got, "llamasc_model_loads_total", model="m1", reason="request") == 1
    assert value(got, "llamasc_model_loads_total", model="m1", reason="restart") == 1
    assert value(got, "llamasc_sidecar_restarts_total", model="m1") == 1
    assert value(got, "llamasc_model_load_failures_total", model="m2") == 1
    assert (
        value(got, "llamasc_requests_total", model="m2", route="/v1/chat/completions", status="502")
        == 1
    )


def test_event_stream_starts_with_state_then_follows_changes(daemon: Any) -> None:
    reader = EventReader(daemon.url)
    assert reader.types()[0] == "state"
    assert reader.events[0][1]["sidecars"] == []
    assert reader.events[0][1]["models"] == ["m1", "m2"]
    with httpx.Client(base_url=daemon.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        wait_until(lambda: reader.of("request_finished"), 10, "request_finished")
        hash_ = daemon.sidecars()[0]["hash"]
        assert c.delete(f"/sidecars/{hash_[:8]}").status_code == 200
    wait_until(
        lambda: any(d["state"] == "exited" for d in reader.of("sidecar")), 10, "the exit event"
    )
    wanted = ("sidecar", "request_started", "request_finished")
    kinds = [(t, d.get("state")) for t, d in reader.events if t in wanted]
    assert kinds == [
        ("request_started", None),
        ("sidecar", "starting"),
        ("sidecar", "ready"),
        ("request_finished", None),
        ("sidecar", "stopping"),
        ("sidecar", "exited"),
    ]
    finished = reader.of("request_finished")[0]
    assert finished["model"] == "m1"
    assert finished["status"] == 200
    assert finished["sidecar"] == hash_[:8]
    assert finished["load_wait"] > 0
    assert finished["completion_tokens"] == 3
    stopping = next(d for d in reader.of("sidecar") if d["state"] == "stopping")
    assert stopping["reason"] == "requested"
    exited = next(d for d in reader.of("sidecar") if d["state"] == "exited")
    assert exited["reason"] == "requested"
    assert exited["exit_code"] == 0
    assert reader.of("queue")  # the queue changed as the request waited and finished
    # a new client gets the present first
    late = EventReader(daemon.url)
    assert late.events[0][0] == "state"


def test_events_with_logs_carry_sidecar_lines(daemon: Any) -> None:
    with httpx.Client(base_url=daemon.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
    reader = EventReader(daemon.url, logs="1")
    wait_until(lambda: reader.of("log"), 10, "log lines")
    assert any("listening on" in d["line"] for d in reader.of("log"))
    assert {d["sidecar"] for d in reader.of("log")} == {daemon.sidecars()[0]["hash"][:8]}


def test_history_rows_and_activity_route(daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    db = tmp_path / "hist" / "requests.sqlite3"
    d = daemon_factory(history=str(db))
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert (
            c.post(
                "/v1/chat/completions", json=chat("m1"), headers={"X-Agent-Flags": "--top-k 5"}
            ).status_code
            == 200
        )
        assert c.post("/v1/chat/completions", json=chat("m2")).status_code == 200
        assert c.post("/v1/chat/completions", json=chat("zzz")).status_code == 404

        def rows() -> list[dict[str, Any]]:
            return list(c.get("/api/activity", params={"limit": "10"}).json()["requests"])

        wait_until(lambda: len(rows()) == 3, 10, "three history rows")
        got = rows()
        assert [r["model"] for r in got] == ["zzz", "m2", "m1"]
        assert got[0]["status"] == 404
        assert got[0]["error_code"] == "model_not_found"
        m1 = got[2]
        assert m1["status"] == 200
        assert m1["client"] == "127.0.0.1"
        assert m1["route"] == "/v1/chat/completions"
        assert len(m1["sidecar"]) == 8
        assert len(m1["flags_hash"]) == 8
        assert got[1]["flags_hash"] == ""
        assert m1["completion_tokens"] == 3
        assert m1["load_wait"] > 0
        assert m1["queue_wait"] >= 0
        assert m1["ttft"] > 0
        assert m1["duration"] >= m1["ttft"]
        assert [
            r["model"] for r in c.get("/api/activity", params={"model": "m2"}).json()["requests"]
        ] == ["m2"]
        bad = c.get("/api/activity", params={"limit": "0"})
        assert bad.status_code == 400
        assert {"message", "type", "code"} <= set(bad.json()["error"])
    assert db.exists()


def test_no_history_and_no_observability(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(no_history="true")
    with httpx.Client(base_url=d.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        data = c.get("/api/activity").json()
        assert data == {"now": data["now"], "history": None, "requests": []}
        assert c.get("/metrics").status_code == 200
    off = daemon_factory(observability="false")
    with httpx.Client(base_url=off.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
        for path in ("/metrics", "/api/events"):
            resp = c.get(path)
            assert resp.status_code == 404
            assert "observability is off" in resp.json()["error"]["message"]


def test_metrics_need_the_key_unless_public(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(api_key="sekrit")
    assert httpx.get(d.url + "/metrics").status_code == 401
    assert httpx.get(d.url + "/api/events").status_code == 401
    assert httpx.get(d.url + "/api/activity").status_code == 401
    assert scrape(d.url, Authorization="Bearer sekrit")
    assert httpx.get(d.url + "/ui/").status_code == 200  # the page asks for the key itself
    public = daemon_factory(api_key="sekrit", metrics_public="true")
    assert scrape(public.url)
    assert httpx.get(public.url + "/api/activity").status_code == 401
    assert httpx.get(public.url + "/metrics", params={"model": "m1"}).status_code == 401


def test_the_dashboard_is_served_from_the_package(daemon: Any) -> None:
    with httpx.Client(base_url=daemon.url, timeout=10) as c:
        page = c.get("/ui/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert 'src="app.js"' in page.text
        assert "http://" not in page.text
        assert "https://" not in page.text
        assert c.get("/ui/app.js").status_code == 200
        assert c.get("/ui", follow_redirects=False).status_code in (307, 308)
        assert c.get("/ui/nope.js").status_code == 404
        memory = c.get("/api/memory").json()
        assert memory["devices"]["host"]["total"] > 0


def test_a_client_that_does_not_read_never_slows_the_daemon(daemon: Any) -> None:
    """A stalled /api/events client: its buffer stays bounded, requests stay fast, and when it
    reads again it is told how many events it lost."""
    import socket

    host, port = daemon.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    try:
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        observer = daemon.daemon.app.llamasc.observer
        wait_until(lambda: observer.bus.active, 10, "the subscription")
        blob = "x" * 10000
        for i in range(5000):  # ~50 MB: far more than the socket buffers hold
            observer.bus.publish_threadsafe("noise", n=i, blob=blob)
        # Wait until the loop has put every one (callbacks run in order). Not on `dropped > 0`:
        # the writer may already hold the batch that reports the loss (which resets it); the
        # report itself is checked below, in what the client reads.
        published = threading.Event()
        observer.bus._loop.call_soon_threadsafe(published.set)
        assert published.wait(30), "the daemon's loop did not run the publishes"
        (sub,) = observer.bus._subs
        assert len(sub.buffer) <= observer.bus.buffer
        t0 = time.monotonic()
        with httpx.Client(base_url=daemon.url, timeout=30) as c:
            assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
            assert c.get("/health").status_code == 200
        assert time.monotonic() - t0 < 10
        # now read it all: somewhere in it is the count of what was lost
        sock.settimeout(5)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                break
            chunks.append(chunk)
            if not chunk or b"request_finished" in chunks[-1][-20000:]:
                break
        data = b"".join(chunks)
        assert b"event: dropped" in data
        at = data.index(b"event: dropped")
        line = data[at:].split(b"\n", 2)[1]
        assert json.loads(line.removeprefix(b"data: "))["count"] > 0
        assert b"request_finished" in data[at:]  # the newest events survive, after the report
    finally:
        sock.close()
