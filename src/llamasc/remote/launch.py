"""What every launcher shares: the launch request, the running-server handle, the protocol,
and the readiness loop (health through the forward, early exit through the host).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llamasc.errors import ReadinessTimeoutError, SpawnError
from llamasc.remote.transport import Forward

log = logging.getLogger(__name__)

LAUNCH_PREFIX = "llamasc-bench-"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TAIL_LINES = 20


@dataclass(frozen=True)
class LaunchSpec:
    """One llama-server to start: everything after ``--host``/``--port`` is in ``args``."""

    binary: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    label: str = ""
    # variables of the host's environment the user passes on purpose (``--keep-env``): every
    # other one that would steer llama-server (``LLAMA_ARG_*`` ...) is scrubbed on every host
    keep_env: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (*self.env, *self.keep_env):
            if not ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name: {name!r}")


@dataclass
class RunningServer:
    """A started llama-server on some host; ``base_url`` is reachable from this machine."""

    launch_id: str
    host: str
    port: int
    argv: list[str]
    base_url: str = ""
    pid: int | None = None
    pgid: int | None = None
    workdir: str = ""
    task_name: str = ""
    forward: Forward | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Launcher(Protocol):
    """Starts and stops llama-servers on one host (local, Linux over SSH, Windows over SSH)."""

    host: str
    os_name: str

    def version(self, binary: str) -> str:
        """``llama-server --version`` on the host: the build string (fails if it cannot run)."""
        ...

    def start(self, spec: LaunchSpec, *, timeout: float) -> RunningServer:
        """Start, wait until ``/health`` is 200, return. Raises SpawnError if it exits first
        (with the log tail), ReadinessTimeoutError on timeout; nothing is left running."""
        ...

    def alive(self, server: RunningServer) -> bool | None:
        """True: answers /health. False: the process is gone. None: cannot tell yet."""
        ...

    def read_text(self, path: str) -> str:
        """A (small) text file on the host, e.g. a llama-swap config."""
        ...

    def path_exists(self, path: str) -> bool: ...

    def environ(self) -> dict[str, str]:
        """The environment a command sees on the host (for ``${env.NAME}`` macros)."""
        ...

    def stop(self, server: RunningServer) -> None:
        """Stop it and confirm it is gone (and its VRAM freed where nvidia-smi exists)."""
        ...

    def reap_stale(self) -> list[str]:
        """Stop servers a crashed earlier bench left behind; returns what was cleaned."""
        ...

    def close(self) -> None: ...


def owner_info() -> dict[str, object]:
    """Who started a launch: lets a later bench tell orphans from a live sibling's servers."""
    import os
    import socket

    import psutil

    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": psutil.Process().create_time(),
    }


def owner_alive(meta: Mapping[str, object]) -> bool:
    """True when the bench that made this launch still runs on this machine."""
    import socket

    import psutil

    owner = meta.get("owner")
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False  # another machine's bench, or none recorded: cannot tell, treat as dead
    try:
        proc = psutil.Process(int(owner.get("pid") or 0))
        return abs(proc.create_time() - float(owner.get("started") or 0)) < 1.0
    except (psutil.Error, ValueError):
        return False


def new_launch_id(port: int) -> str:
    return f"{LAUNCH_PREFIX}{port}-{secrets.token_hex(3)}"


def server_argv(spec: LaunchSpec, port: int) -> list[str]:
    """The full command line: binary, loopback host, our port, then the spec's flags."""
    return [spec.binary, "--host", "127.0.0.1", "--port", str(port), *spec.args]


def tail(text: str, lines: int = TAIL_LINES) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def wait_until_ready(
    *,
    health: Callable[[], bool],
    exited: Callable[[], int | None],
    log_tail: Callable[[], list[str]],
    timeout: float,
    what: str,
    poll_s: float = 0.1,
) -> None:
    """Poll until ``health()`` or until ``exited()`` returns an exit code or time runs out."""
    deadline = time.monotonic() + timeout
    delay = poll_s
    while True:
        code = exited()
        if code is not None:
            lines = log_tail()
            last = lines[-1] if lines else "no output"
            raise SpawnError(
                f"{what} exited with code {code} before it was ready: {last}",
                exit_code=code,
                stderr_tail=lines,
            )
        if health():
            return
        if time.monotonic() >= deadline:
            raise ReadinessTimeoutError(
                f"{what} was not ready after {timeout:.0f}s", details=log_tail()
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def http_health(base_url: str, timeout: float = 2.0) -> bool:
    """True when ``GET /health`` answers 200."""
    import httpx

    try:
        return httpx.get(base_url + "/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def parse_pid_column(text: str) -> list[int]:
    """PIDs from the first column of ``nvidia-smi --query-compute-apps=pid,...`` output."""
    return [int(m) for m in re.findall(r"^\s*(\d+)", text, re.MULTILINE)]


def env_lines(env: Mapping[str, str]) -> Sequence[tuple[str, str]]:
    return sorted(env.items())


__all__ = [
    "LAUNCH_PREFIX",
    "LaunchSpec",
    "Launcher",
    "RunningServer",
    "http_health",
    "new_launch_id",
    "owner_alive",
    "owner_info",
    "server_argv",
    "tail",
    "wait_until_ready",
]
