"""Shutdown of a real daemon with clients in every state: waiters get 503 ``shutting_down``
at once, answers in flight finish within the grace, and nothing ends in a 500."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from server_fakes import DaemonFactory, chat

DEADLINE = 30.0


class Client(threading.Thread):
    """One request in a thread; ``result`` is (status, body text, seconds taken)."""

    def __init__(self, url: str, body: dict[str, Any], stream: bool = False) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.stream = url, body, stream
        self.result: tuple[int, str, float] | None = None
        self.sent = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        with httpx.Client(timeout=DEADLINE * 2) as c:
            self.sent.set()
            try:
                if self.stream:
                    with c.stream("POST", self.url, json=self.body) as r:
                        text = "".join(r.iter_text())
                else:
                    r = c.post(self.url, json=self.body)
                    text = r.text
                self.result = (r.status_code, text, time.monotonic() - t0)
            except httpx.HTTPError as exc:
                self.result = (-1, repr(exc), time.monotonic() - t0)


def wait_for(pred: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_waiters_get_503_at_once_and_answers_in_flight_finish(
    daemon_factory: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_TOKEN_DELAY", "0.2")
    monkeypatch.setenv("FAKE_LLAMA_CHUNKS", "10")
    d = daemon_factory(shutdown_grace="20")
    url = d.url + "/v1/chat/completions"
    assert httpx.post(url, json=chat("m2"), timeout=DEADLINE).status_code == 200  # m2 warm
    monkeypatch.setenv("FAKE_LLAMA_LOAD_DELAY", "60")  # m1's child will load for a minute
    waiter = Client(url, chat("m1"))
    waiter.start()
    wait_for(lambda: any(s["model"] == "m1" for s in d.sidecars()), "m1 to be loading")
    streamer = Client(url, chat("m2", max_tokens=10, stream=True), stream=True)
    streamer.start()
    wait_for(lambda: any(s["in_flight"] for s in d.sidecars() if s["model"] == "m2"), "m2 busy")
    t_stop = time.monotonic()
    stopper = threading.Thread(target=d.stop, kwargs={"timeout": DEADLINE * 2})
    stopper.start()
    waiter.join(DEADLINE)
    assert waiter.result is not None
    status, text, _ = waiter.result
    assert status == 503, text
    assert '"shutting_down"' in text
    assert time.monotonic() - t_stop < DEADLINE / 3  # at once, not after the 20 s grace
    streamer.join(DEADLINE)
    assert streamer.result is not None
    status, text, _ = streamer.result
    assert status == 200
    assert text.rstrip().endswith("data: [DONE]")  # the answer in flight got its grace
    stopper.join(DEADLINE * 2)


def test_an_answer_not_started_when_the_grace_runs_out_is_a_503_not_a_500(
    daemon_factory: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = daemon_factory(shutdown_grace="1")
    url = d.url + "/v1/chat/completions"
    assert httpx.post(url, json=chat("m1"), timeout=DEADLINE).status_code == 200
    monkeypatch.setenv("FAKE_LLAMA_HANG_REQUESTS", "1")
    hung = Client(url, chat("m2"))  # m2's child takes the request and never answers
    hung.start()
    wait_for(lambda: any(s["in_flight"] for s in d.sidecars() if s["model"] == "m2"), "m2 busy")
    d.stop(timeout=DEADLINE * 2)
    hung.join(DEADLINE)
    assert hung.result is not None
    status, text, _ = hung.result
    assert status == 503, text
    assert '"shutting_down"' in text
