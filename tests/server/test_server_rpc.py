"""A model spread over RPC workers, against the fake llama-server and fake workers (our own
TCP listeners): the pinned PyPI llama-server is built without RPC, so no real rpc-server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_fakes import DaemonFactory, chat, wait_until
from typer.testing import CliRunner

from free_ports import free_port_block
from llamasc.cli import app as cli_app
from llamasc.config.settings import settings_from_sources
from llamasc.errors import ConfigError
from llamasc.server import Daemon


class Worker:
    """Stands in for rpc-server: accepts TCP connections on a fixed port; stop and restart."""

    def __init__(self) -> None:
        self.port = free_port_block(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self.sock: socket.socket | None = None
        self.start()

    def start(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, args=(self.sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()

    def stop(self) -> None:
        if self.sock is not None:
            # shutdown first: a close alone leaves a thread blocked in accept() listening
            self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
            self.sock = None


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    ws = [Worker(), Worker()]
    yield ws
    for w in ws:
        w.stop()


def rpc_args(ws: list[Worker]) -> str:
    return json.dumps(["-c", "512", "--rpc", ",".join(w.address for w in ws)])


def test_serve_refuses_a_worker_that_does_not_answer(
    workers: list[Worker], daemon_factory: DaemonFactory
) -> None:
    workers[1].stop()
    with pytest.raises(ConfigError, match=rf"RPC worker {workers[1].address} .*not answer"):
        daemon_factory(base_args=rpc_args(workers))


def test_workers_in_health_and_ps_and_a_lost_worker_gives_a_502_naming_it(
    workers: list[Worker], daemon_factory: DaemonFactory
) -> None:
    d = daemon_factory(base_args=rpc_args(workers))
    with httpx.Client(base_url=d.url, timeout=30) as c:
        health = c.get("/health").json()
        assert [w["address"] for w in health["rpc_workers"]] == [w.address for w in workers]
        assert all(w["up"] for w in health["rpc_workers"])
        r = c.post("/v1/chat/completions", json=chat("m1"))
        assert r.status_code == 200, r.text
        (sidecar,) = d.sidecars()
        assert sidecar["rpc_workers"] == [w.address for w in workers]

        ps = CliRunner().invoke(cli_app, ["ps", "--daemon", d.url])
        assert ps.exit_code == 0, ps.output
        assert f"rpc worker {workers[0].address}: up" in ps.output

        workers[1].stop()
        health = c.get("/health").json()
        assert [w["up"] for w in health["rpc_workers"]] == [True, False]
        # the health monitor replaces the sidecar whose worker went away ...
        wait_until(lambda: not d.sidecars(), 30, "the sidecar to be stopped")
        # ... and a new one is refused while the worker is away, with a 502 naming it
        r = c.post("/v1/chat/completions", json=chat("m1"))
        assert r.status_code == 502, r.text
        err = r.json()["error"]
        assert err["code"] == "rpc_worker_unreachable"
        assert workers[1].address in err["message"]
        assert workers[0].address not in err["message"]
        ps = CliRunner().invoke(cli_app, ["ps", "--daemon", d.url])
        assert ps.exit_code == 0
        # once the worker is back, the next request starts the sidecar again
        workers[1].start()
        r = c.post("/v1/chat/completions", json=chat("m1"))
        assert r.status_code == 200, r.text


def test_a_worker_lost_mid_request_gives_a_502_naming_it(
    workers: list[Worker], daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    """The fake, like llama-server, aborts when a worker stops answering mid-request: the
    request in flight (a stream, and a plain answer) is told which worker, not only that the
    connection broke. The health monitor is slowed down so that the relay's path is tested."""
    hold = tmp_path / "hold"
    env = {"FAKE_LLAMA_TOKEN_DELAY": "0.05", "FAKE_LLAMA_CHUNKS": "400"}
    d = daemon_factory(
        {"models": {"m1": {"env": env}, "m2": {"env": {"FAKE_LLAMA_HOLD_FILE": str(hold)}}}},
        base_args=rpc_args(workers),
        health_interval="60",
    )
    body = {**chat("m1"), "stream": True}
    with httpx.Client(base_url=d.url, timeout=30) as c:
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            workers[1].stop()
            rest = "\n".join(lines)
        event = json.loads(next(ln for ln in rest.splitlines() if '"error"' in ln)[5:])
        assert event["error"]["code"] == "rpc_worker_unreachable", event
        assert workers[1].address in event["error"]["message"]
        assert workers[0].address not in event["error"]["message"]

        workers[1].start()
        hold.touch()  # m2's first completion waits while the file exists
        result: dict[str, httpx.Response] = {}
        t = threading.Thread(
            target=lambda: result.update(r=c.post("/v1/chat/completions", json=chat("m2")))
        )
        t.start()
        wait_until(lambda: any(s["in_flight"] for s in d.sidecars()), 30, "m2's request")
        workers[0].stop()
        hold.unlink()
        t.join(30)
    r = result["r"]
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["code"] == "rpc_worker_unreachable"
    assert workers[0].address in err["message"]
    assert workers[1].address not in err["message"]


def test_clients_still_cannot_pass_rpc(
    workers: list[Worker], daemon_factory: DaemonFactory
) -> None:
    d = daemon_factory()
    with httpx.Client(base_url=d.url, timeout=30) as c:
        r = c.post(
            "/v1/chat/completions",
            json=chat("m1"),
            headers={"X-Agent-Flags": f"--rpc {workers[0].address}"},
        )
    assert r.status_code == 400
    assert "--rpc" in json.dumps(r.json()["error"])
    assert d.sidecars() == []


@pytest.mark.real
def test_serve_refuses_rpc_with_a_build_without_it(
    tmp_path: Path, llama_server_bin: Path, workers: list[Worker], isolated_env: Path
) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    (tmp_path / "models.json").write_text(json.dumps({"m": str(gguf)}))
    settings = settings_from_sources(
        env={},
        cli={
            "llama_server_bin": str(llama_server_bin),
            "model_map_file": str(tmp_path / "models.json"),
            "bind": "127.0.0.1:0",
            "base_args": rpc_args(workers),
            "home": str(tmp_path / "home"),
        },
    )
    with pytest.raises(ConfigError, match=r"built without RPC support.*-DGGML_RPC=ON"):
        Daemon(settings)
