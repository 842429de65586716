"""An opaque upstream: a llama-swap model whose ``cmd`` is not llama-server (vLLM, whisper.cpp's
server, a ``docker run``...), run and stopped the way llama-swap does, with llamasc's
no-orphan guarantees.

- ``cmd`` is an argv (never a shell) with ``${PORT}`` filled from the pool's port range; the
  environment is the same scrubbed one llama-server children get, plus the model's ``env``.
- Ready when ``GET checkEndpoint`` (default ``/health``) at the ``proxy`` URL answers 200
  within the health-check timeout; ``none`` skips the check (ready once spawned).
- Stopped by ``cmdStop`` (``${PID}``, ``${MODEL_ID}`` and ``${PORT}`` filled), else SIGTERM
  (Windows: CTRL_BREAK_EVENT) to its process group; SIGKILL after ``unloadTimeout`` seconds
  either way. It runs under the same platform controls as llama-server (parent-death signal,
  process group / job object), so it dies with the daemon.

:class:`OpaqueBackend` is a :class:`~llamasc.process.server.LlamaServer` whose argv, readiness
probe, health check and stop differ: the pool's handle protocol is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from llamasc.process._control import platform_control
from llamasc.process._health import probe_health
from llamasc.process.environment import scrubbed_env
from llamasc.process.server import LlamaServer, _open_log_file, _spawn
from llamasc.process.spec import LaunchSpec

log = logging.getLogger(__name__)

CMD_STOP_TIMEOUT = 30.0  # the cmdStop program itself (e.g. ``docker stop``) must end by then


def fill(template: str, values: Mapping[str, str]) -> str:
    """``${PORT}``/``${PID}``/``${MODEL_ID}`` replaced (the reader left only these in)."""
    for name, value in values.items():
        template = template.replace("${" + name + "}", value)
    return template


@dataclass(frozen=True)
class OpaqueSpec:
    """One opaque upstream to run: what the llama-swap model says, and the port it gets."""

    model_id: str
    argv: tuple[str, ...]
    port: int
    proxy: str = "http://localhost:${PORT}"
    check_endpoint: str = "/health"
    cmd_stop: tuple[str, ...] = ()
    unload_timeout: float | None = None  # None: the pool's stop grace
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    log_file: Path | None = None
    label: str = ""

    def values(self, pid: int | None = None) -> dict[str, str]:
        out = {"PORT": str(self.port), "MODEL_ID": self.model_id}
        if pid is not None:
            out["PID"] = str(pid)
        return out

    @property
    def base_url(self) -> str:
        return fill(self.proxy, self.values()).rstrip("/")

    def command(self) -> list[str]:
        return [fill(a, self.values()) for a in self.argv]


class OpaqueBackend(LlamaServer):
    """A running opaque upstream. Create it with :meth:`launch`; end it with ``stop``."""

    opaque: OpaqueSpec

    @classmethod
    async def launch(cls, spec: OpaqueSpec, *, ready_timeout: float = 60.0) -> OpaqueBackend:
        """Spawn ``spec``'s command and return once its check endpoint answers 200.

        Raises SpawnError if it exits first, ReadinessTimeoutError after ``ready_timeout``
        (it is killed); a cancelled caller leaves nothing running.
        """
        loop = asyncio.get_running_loop()
        argv = spec.command()
        # a LaunchSpec for the shared machinery (log prefix, log file, ring); never an argv
        shim = LaunchSpec(
            binary=Path(argv[0]),
            model_path=Path(argv[0]),
            args=(),
            port=spec.port,
            log_file=spec.log_file,
            label=spec.label or spec.model_id,
        )
        env = scrubbed_env(spec.env)
        control = platform_control()
        log_fh = _open_log_file(shim, argv)
        proc = _spawn(argv, env, control, log_fh, f"{spec.model_id}'s cmd")
        backend = cls(shim, argv, proc, control, loop)
        backend.opaque = spec
        backend.base_url = spec.base_url
        backend._begin(log_fh, None)
        await backend._ready_or_killed(ready_timeout)
        return backend

    # --- what differs from llama-server --------------------------------------------------

    def _probe_target(self) -> tuple[str, int, str] | None:
        """(host, port, path) of the check endpoint, or None for ``none``."""
        path = self.opaque.check_endpoint
        if path.strip().lower() == "none":
            return None
        url = urlsplit(self.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        return url.hostname or "127.0.0.1", port, path if path.startswith("/") else "/" + path

    def _owns_port(self) -> bool:
        return True  # a container or a wrapper may answer for it: the check endpoint decides

    async def check_health(self, timeout: float = 2.0) -> bool:  # noqa: ASYNC109 (pool API)
        if self.returncode is not None:
            return False
        target = self._probe_target()
        if target is None:
            return True
        h, port, path = target
        return await probe_health(h, port, timeout, path) == 200

    def _exited_words(self, exit_text: str) -> str:
        return f"{self.opaque.model_id}'s cmd {exit_text}"

    def _not_ready_words(self, ready_timeout: float) -> str:
        return (
            f"{self.opaque.model_id} at {self.base_url} did not answer "
            f"{self.opaque.check_endpoint} with 200 within {ready_timeout:g}s"
        )

    async def _stop(self, grace: float) -> int | None:
        if self.opaque.unload_timeout is not None:
            grace = self.opaque.unload_timeout
        running = self.returncode is None and not self._exited.is_set()
        if self.opaque.cmd_stop and running:
            self._stopping = True
            if not await self._run_cmd_stop():  # it could not run: signal the process
                return await super()._stop(grace)
            if await self._wait_exit(grace):
                await self._drained()
                return self.returncode
            log.warning(
                "%spid %d still running %.1fs after cmdStop; killing it",
                self._prefix,
                self.pid,
                grace,
            )
            self._control.hard_kill(self._proc)
            await self._wait_exit(10.0)
            await self._drained()
            return self.returncode
        return await super()._stop(grace)

    async def _run_cmd_stop(self) -> bool:
        """Run ``cmdStop``; False when it could not be run at all."""
        values = self.opaque.values(self.pid)
        argv = [fill(a, values) for a in self.opaque.cmd_stop]
        log.info("%sstopping pid %d with cmdStop: %s", self._prefix, self.pid, " ".join(argv))
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=scrubbed_env(self.opaque.env),
            )
        except (OSError, NotImplementedError) as exc:  # no subprocesses on this loop
            log.warning("%scmdStop %s cannot run: %s", self._prefix, argv[0], exc)
            return False
        try:
            _, err = await asyncio.wait_for(proc.communicate(), CMD_STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            log.warning("%scmdStop took more than %gs", self._prefix, CMD_STOP_TIMEOUT)
            return True
        if proc.returncode != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            log.warning("%scmdStop exited with %s: %s", self._prefix, proc.returncode, last[0])
        else:
            log.debug("%scmdStop done in %.2fs", self._prefix, time.monotonic() - started)
        return True


__all__ = ["OpaqueBackend", "OpaqueSpec", "fill"]
