"""llama.cpp's RPC workers: the ``--rpc host:port,...`` of a model's operator arguments.

A model too big for one host is spread by llama.cpp itself over ``rpc-server`` processes on
other hosts; llamasc only checks that each worker answers (a TCP connect: the ggml RPC
protocol has no cheaper probe that would not tie us to its version) before it starts or
reports a sidecar, and names the one that does not.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llamasc.errors import ConfigError, RpcWorkerError

PROBE_TIMEOUT = 3.0
RPC_FLAG = "--rpc"


@dataclass(frozen=True, slots=True)
class RpcWorker:
    """One ``rpc-server`` a sidecar's model is spread over."""

    host: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_rpc_list(text: str) -> tuple[RpcWorker, ...]:
    """``host:port,[v6::addr]:port`` -> workers. Raises ConfigError on a malformed entry."""
    workers: list[RpcWorker] = []
    for item in (part.strip() for part in text.split(",")):
        host, sep, port_text = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(f"--rpc: {item!r} is not host:port")
        workers.append(RpcWorker(host, int(port_text)))
    return tuple(workers)


def rpc_workers(args: Sequence[str]) -> tuple[RpcWorker, ...]:
    """The workers named by ``--rpc`` in canonical llama-server args (the last one wins)."""
    found: tuple[RpcWorker, ...] = ()
    for i, arg in enumerate(args[:-1]):
        if arg == RPC_FLAG:
            found = parse_rpc_list(args[i + 1])
    return found


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer"
    if exc.errno:  # asyncio words a refusal as "Connect call failed (...)"
        return os.strerror(exc.errno)
    return exc.strerror or type(exc).__name__


async def probe(worker: RpcWorker, timeout: float = PROBE_TIMEOUT) -> str | None:  # noqa: ASYNC109
    """None if the worker accepts a connection, else why not."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(worker.host, worker.port)
    except OSError as exc:
        return _reason(exc)
    writer.close()
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except OSError:
        pass
    return None


def probe_blocking(worker: RpcWorker, timeout: float = PROBE_TIMEOUT) -> str | None:
    """:func:`probe`, for start-up code that runs before any event loop."""
    try:
        with socket.create_connection((worker.host, worker.port), timeout=timeout):
            return None
    except OSError as exc:
        return _reason(exc)


def _error(down: list[tuple[RpcWorker, str]]) -> RpcWorkerError:
    names = ", ".join(f"{w.address} ({why})" for w, why in down)
    noun = "RPC worker" if len(down) == 1 else "RPC workers"
    verb = "does" if len(down) == 1 else "do"
    return RpcWorkerError(
        f"{noun} {names} {verb} not answer; start rpc-server there (or fix --rpc)",
        workers=[w.address for w, _ in down],
    )


async def check_workers(workers: Sequence[RpcWorker], timeout: float = PROBE_TIMEOUT) -> None:  # noqa: ASYNC109
    """Raise RpcWorkerError naming every worker that does not answer."""
    if not workers:
        return
    reasons = await asyncio.gather(*(probe(w, timeout) for w in workers))
    down = [(w, why) for w, why in zip(workers, reasons, strict=True) if why is not None]
    if down:
        raise _error(down)


def check_workers_blocking(workers: Sequence[RpcWorker], timeout: float = PROBE_TIMEOUT) -> None:
    """:func:`check_workers` without an event loop (one worker after the other)."""
    down = [(w, why) for w in workers if (why := probe_blocking(w, timeout)) is not None]
    if down:
        raise _error(down)


async def worker_status(workers: Sequence[RpcWorker], timeout: float = 1.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
    """``[{"address", "up", "error"}]`` for ``/health``."""
    reasons = await asyncio.gather(*(probe(w, timeout) for w in workers))
    return [
        {"address": w.address, "up": why is None, "error": why}
        for w, why in zip(workers, reasons, strict=True)
    ]


def binary_supports_rpc(
    binary: str | os.PathLike[str],
    workers: Sequence[RpcWorker],
    timeout: float = 30.0,
) -> bool:
    """False if this llama-server was built without ``-DGGML_RPC=ON``.

    Every build lists ``--rpc`` in its help; one without the RPC backend refuses the flag
    while parsing it ("RPC not supported in this build"). So run ``--rpc W --version``:
    ``--rpc`` is handled first (a build with RPC connects to the workers, which were just
    checked to answer), then ``--version`` exits."""
    servers = ",".join(w.address for w in workers)
    try:
        out = subprocess.run(
            [os.fspath(binary), "--rpc", servers, "--version"],
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return True  # it is talking to the workers: the backend is there
    except OSError:
        return False
    text = (out.stdout + out.stderr).decode("utf-8", "replace")
    return "RPC not supported" not in text


__all__ = [
    "RpcWorker",
    "binary_supports_rpc",
    "check_workers",
    "check_workers_blocking",
    "parse_rpc_list",
    "probe",
    "probe_blocking",
    "rpc_workers",
    "worker_status",
]
