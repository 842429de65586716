"""What one client connection may cost a real daemon (uvicorn on 127.0.0.1 over the fake
llama-server): header and body timeouts, header size and count, the connection limit, and
JSON answers to protocol errors. Raw sockets, since HTTP clients refuse to misbehave."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from server_fakes import DaemonFactory, chat

from llamasc.server._httpbounds import default_max_connections

DEADLINE = 30.0  # generous: the machine may be busy; the bounds under test are 1-2 s


def connect(url: str) -> socket.socket:
    u = urlsplit(url)
    return socket.create_connection((u.hostname, u.port), timeout=DEADLINE)


def read_answer(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read until the server closes; (status, headers, body). Status 0: closed silently."""
    data = b""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_json_error(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, (got, body)
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code


def send_quietly(s: socket.socket, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        s.sendall(data)  # the daemon may refuse and close first: what the tests want to see


HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"


def test_slowloris_headers_are_cut_with_408_and_a_log_line(
    daemon_factory: DaemonFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "llamasc.server._httpbounds")
    d = daemon_factory(header_timeout="1")
    with connect(d.url) as s:
        start = time.monotonic()
        s.sendall(HEAD)
        s.settimeout(0.2)
        answer = b""
        while time.monotonic() - start < DEADLINE:  # one byte every 0.2 s, forever
            try:
                s.sendall(b"X")
                answer += s.recv(65536)
                if answer:
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert time.monotonic() - start < DEADLINE / 2
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"request_timeout"' in answer
    assert "did not send its request headers within 1 s" in caplog.text


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    daemon_factory: DaemonFactory,
) -> None:
    d = daemon_factory(header_timeout="1")
    with connect(d.url) as s:
        start = time.monotonic()
        assert read_answer(s) == (0, {}, b"")
        assert 0.5 < time.monotonic() - start < DEADLINE / 2


def test_a_paused_body_is_cut_with_408(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(body_timeout="1")
    with connect(d.url) as s:
        s.sendall(HEAD + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        assert_json_error(read_answer(s), 408, "request_timeout")
    r = httpx.post(d.url + "/v1/chat/completions", json=chat("m1"), timeout=DEADLINE)
    assert r.status_code == 200  # a body that keeps coming is unaffected


def test_a_huge_header_is_refused_before_it_is_buffered(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory()
    with connect(d.url) as s:
        s.sendall(HEAD + b"X-Big: ")
        sent = 0
        for _ in range(256):  # up to 16 MiB, but the daemon must stop us long before
            try:
                s.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 65536
        assert sent < 8 * 1024 * 1024
        assert_json_error(read_answer(s), 431, "headers_too_large")


def test_too_many_headers_are_refused(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(max_headers="20")
    with connect(d.url) as s:
        send_quietly(s, HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(30)) + b"\r\n")
        assert_json_error(read_answer(s), 431, "headers_too_large")
    r = httpx.get(d.url + "/health", headers={f"x-h{i}": "v" for i in range(10)})
    assert r.status_code == 200


def test_a_header_llama_server_would_refuse_is_answered_by_us(
    daemon_factory: DaemonFactory,
) -> None:
    d = daemon_factory()
    r = httpx.post(
        d.url + "/v1/chat/completions",
        json=chat("m1"),
        headers={"x-long": "a" * 9000},
        timeout=DEADLINE,
    )
    assert r.status_code == 431
    assert r.json()["error"]["code"] == "headers_too_large"
    assert "x-long" in r.json()["error"]["message"]


def test_past_the_connection_limit_a_client_gets_a_json_503_and_others_go_on(
    daemon_factory: DaemonFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "llamasc.server._httpbounds")
    d = daemon_factory(max_connections="4", header_timeout="60")
    idle = [connect(d.url) for _ in range(4)]
    try:
        time.sleep(0.2)  # not a wait for a result: lets the daemon accept all four first
        with connect(d.url) as extra:
            status, headers, body = read_answer(extra)
        assert status == 503
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        assert headers["retry-after"] == "1"
        assert "connection limit of 4 reached" in caplog.text
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + DEADLINE
    while True:  # the daemon notices the closed sockets on its own schedule
        try:
            if httpx.get(d.url + "/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the daemon did not recover"
        time.sleep(0.05)


def test_the_default_connection_limit_stays_below_the_open_file_limit() -> None:
    assert default_max_connections(1024) == 480
    assert default_max_connections(20) == 16
    assert default_max_connections() >= 16


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", id="unknown-method"),
        pytest.param(b"\x00\x01\x02 garbage\r\n\r\n", id="junk"),
        pytest.param(b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", id="bad-version"),
        pytest.param(
            HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="smuggling-cl-and-te",
        ),
        pytest.param(
            HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", id="bad-chunk"
        ),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", id="bad-name"),
    ],
)
def test_protocol_errors_get_the_json_envelope(daemon_factory: DaemonFactory, raw: bytes) -> None:
    d = daemon_factory()
    with connect(d.url) as s:
        send_quietly(s, raw)
        status, headers, body = read_answer(s)
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("invalid HTTP request")
