"""One llama-server child: spawn it, know when it is ready, stop it, never leak it.

Design: ``subprocess.Popen`` plus two daemon threads per child (one drains the merged
stdout/stderr, one waits for the exit), reporting to the event loop with
``call_soon_threadsafe``. Not asyncio's subprocess API: that needs the Proactor loop on
Windows, while uvicorn runs the Selector loop there, and this works on any loop
(uvloop included). Readiness probes are raw asyncio streams (see ``_health``).

Call :meth:`LlamaServer.start` from the event loop thread, which lives as long as the
daemon: on Linux the child's parent-death signal is tied to the thread that spawned it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO

import psutil

from llamasc.errors import ConfigError, ReadinessTimeoutError, SpawnError
from llamasc.process._control import ChildControl, platform_control
from llamasc.process._health import port_owned_by, probe_health
from llamasc.process._output import READY_LINE, OutputPump, meaningful_line
from llamasc.process.environment import child_env, warn_system_config
from llamasc.process.readiness import Readiness, wait_ready
from llamasc.process.spec import LaunchSpec, build_argv

log = logging.getLogger(__name__)

TAIL_IN_ERRORS = 20
PROBE_FIRST = 0.005  # seconds between readiness probes at first ...
PROBE_MAX = 0.05  # ... backing off to this
KILL_WAIT = 10.0  # after SIGKILL the exit is a matter of the kernel reclaiming memory
DRAIN_WAIT = 1.0
# Once ready, the output reader rests this long after each read (see OutputPump.pace).
OUTPUT_PACE = 0.1


def _open_log_file(spec: LaunchSpec, argv: list[str]) -> IO[str] | None:
    if spec.log_file is None:
        return None
    try:
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        # Handed to the output thread, which closes it at the child's EOF.
        fh = open(spec.log_file, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"cannot open the sidecar log file {spec.log_file}: {exc}") from exc
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    fh.write(f"--- llamasc {stamp}: starting {' '.join(argv)}\n")
    return fh


def _spawn(
    argv: list[str],
    env: Mapping[str, str],
    control: ChildControl,
    log_fh: IO[str] | None,
    what: str,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` under ``control`` (no-orphan setup); an OSError is a SpawnError naming
    ``what`` (and closes ``log_fh``, which nobody else would)."""
    try:
        # Blocking, on purpose: fork+exec takes a millisecond, and on Linux the child's
        # parent-death signal belongs to the spawning thread, which must be this one.
        return subprocess.Popen(argv, env=env, **control.popen_kwargs())
    except OSError as exc:
        if log_fh is not None:
            log_fh.close()
        raise SpawnError(f"cannot run {what} {argv[0]}: {exc.strerror or exc}") from exc


def describe_exit(rc: int | None) -> str:
    """``exited with code 1`` / ``was killed by SIGILL`` (POSIX reports signals as -N)."""
    if rc is None:
        return "is gone"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        if name == "SIGILL":
            # Seen with -march=native builds whose AMX/AVX-512 kernels the (virtual) CPU
            # advertises but refuses: the process dies at its first matrix multiply.
            return (
                "was killed by SIGILL (illegal instruction: this llama-server was built for "
                "CPU features this machine cannot run; rebuild it with -DGGML_NATIVE=OFF)"
            )
        return f"was killed by {name}"
    return f"exited with code {rc}"


class LlamaServer:
    """A running llama-server child. Create it with :meth:`start`; end it with :meth:`stop`."""

    def __init__(
        self,
        spec: LaunchSpec,
        argv: list[str],
        proc: subprocess.Popen[bytes],
        control: ChildControl,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.spec = spec
        self.argv = argv
        self.pid = proc.pid
        self.port = spec.port
        self.host = spec.host
        self.base_url = spec.base_url
        self.started_at = time.time()
        self.ready_at: float | None = None
        try:
            self.create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            self.create_time = self.started_at
        self._proc = proc
        self._control = control
        self._loop = loop
        self._prefix = spec.prefix
        self._exited = asyncio.Event()
        self._eof = asyncio.Event()
        self._wake = asyncio.Event()  # a readiness line was printed, or the child exited
        self._listening_seen = False
        self._stopping = False
        self._stop_task: asyncio.Future[int | None] | None = None
        self._pump: OutputPump | None = None

    # --- public API ---------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        spec: LaunchSpec,
        *,
        ready_timeout: float = 60.0,
        on_line: Callable[[str], None] | None = None,
    ) -> LlamaServer:
        """Spawn llama-server for ``spec`` and return once ``/health`` says 200.

        Raises :class:`SpawnError` (with exit code and output tail) if the child exits
        first, :class:`ReadinessTimeoutError` after ``ready_timeout`` seconds (the child is
        killed). If the caller is cancelled meanwhile, the child is killed too.
        ``on_line`` gets every output line, in the event loop thread.
        """
        if spec.port == 0:
            raise ConfigError("no port chosen for llama-server (LaunchSpec.port is 0)")
        loop = asyncio.get_running_loop()
        argv = build_argv(spec)
        env = child_env(spec)
        warn_system_config()
        log_fh = _open_log_file(spec, argv)
        control = platform_control()
        proc = _spawn(argv, env, control, log_fh, "llama-server")
        server = cls(spec, argv, proc, control, loop)
        server._begin(log_fh, on_line)
        await server._ready_or_killed(ready_timeout)
        return server

    async def _ready_or_killed(self, ready_timeout: float) -> None:
        """Wait for readiness (:meth:`_await_ready`); on any failure or a cancel, kill the
        child and wait for its reap before raising, so nothing is left running."""
        try:
            await self._await_ready(ready_timeout)
        except asyncio.CancelledError:
            # Kill first: if we are not allowed to await again (a repeated cancel), the
            # waiter thread still reaps the child. Then wait for the reap, so the caller
            # can hand the port to someone else the moment this raises.
            self._kill_now("start was cancelled")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._wait_exit(KILL_WAIT))
            raise
        except BaseException as exc:
            self._kill_now(f"start failed ({type(exc).__name__})")
            await self._wait_exit(KILL_WAIT)
            raise

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited (negative: killed by that signal)."""
        return self._proc.returncode

    def tail(self, n: int = 50) -> list[str]:
        """The child's last ``n`` output lines (at most ``spec.ring_lines`` are kept)."""
        return self._pump.tail(n) if self._pump is not None else []

    async def wait(self) -> int:
        """Wait until the child exits (and its last output is read); its exit code."""
        await self._exited.wait()
        await self._drained()
        rc = self._proc.returncode
        assert rc is not None  # set by the waiter thread before it signals the exit
        return rc

    async def check_health(self, timeout: float = 2.0) -> bool:  # noqa: ASYNC109 (pool API)
        """True if ``GET /health`` answers 200 within ``timeout``."""
        return await probe_health(self.spec.connect_host, self.port, timeout) == 200

    async def stop(self, grace: float = 5.0) -> int | None:
        """Stop the child's whole tree and reap it; idempotent, safe to call concurrently.

        SIGTERM (Windows: CTRL_BREAK_EVENT) to its process group, up to ``grace`` seconds
        to exit, then SIGKILL (TerminateJobObject). Returns the exit code, or None if the
        child could not be reaped even after the kill.
        """
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop(grace))
        # Shielded: a cancelled caller must not leave the child half-stopped.
        return await asyncio.shield(self._stop_task)

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<LlamaServer pid={self.pid} {self.base_url} {state}>"

    # --- internals ----------------------------------------------------------------------

    def _begin(self, log_fh: IO[str] | None, on_line: Callable[[str], None] | None) -> None:
        self._control.adopt(self._proc)
        log.info("%sstarted pid %d: %s", self._prefix, self.pid, " ".join(self.argv))
        assert self._proc.stdout is not None
        self._pump = OutputPump(
            self._proc.stdout,
            loop=self._loop,
            ring_lines=self.spec.ring_lines,
            prefix=self._prefix,
            log_file=log_fh,
            on_line=self._guarded(on_line) if on_line is not None else None,
            on_ready_line=self._on_ready_line,
            on_eof=self._eof.set,
        )
        self._pump.start()
        threading.Thread(target=self._wait_thread, name="llamasc-wait", daemon=True).start()

    def _guarded(self, fn: Callable[[str], None]) -> Callable[[str], None]:
        def call(line: str) -> None:
            try:
                fn(line)
            except Exception:
                log.exception("%son_line callback failed", self._prefix)

        return call

    def _wait_thread(self) -> None:
        rc = self._proc.wait()
        with contextlib.suppress(RuntimeError):  # a closed loop: the child is reaped anyway
            self._loop.call_soon_threadsafe(self._on_exit, rc)

    def _on_exit(self, rc: int) -> None:
        if self._pump is not None:
            self._pump.hurry()
        self._exited.set()
        self._wake.set()
        # Whatever ended the child, its stray descendants (and on Windows its job) go too.
        self._control.release(self._proc)
        if self._stopping or self.ready_at is None:
            log.info("%spid %d exited with code %d", self._prefix, self.pid, rc)
        else:
            last = meaningful_line(self.tail(TAIL_IN_ERRORS))
            log.warning(
                "%spid %d exited unexpectedly with code %d: %s", self._prefix, self.pid, rc, last
            )

    def _on_ready_line(self, line: str) -> None:
        m = READY_LINE.search(line)
        if m and m.group(1).endswith(f":{self.port}"):
            self._listening_seen = True
            self._wake.set()

    def _owns_port(self) -> bool:
        if self._listening_seen:
            return True
        return port_owned_by(self.pid, self.port) is not False

    async def _await_ready(self, ready_timeout: float) -> None:
        async def exited() -> bool:
            return self._exited.is_set()

        outcome = await wait_ready(
            exited=exited,
            probe=self._probe_unless_exit,
            confirm=lambda: self.returncode is None and self._owns_port(),
            wake=self._wake,
            timeout=ready_timeout,
            first=PROBE_FIRST,
            most=PROBE_MAX,
        )
        if outcome is Readiness.EXITED:
            raise await self._spawn_error()
        if outcome is Readiness.TIMEOUT:
            raise self._timeout_error(ready_timeout)
        self.ready_at = time.time()
        if self._pump is not None:
            self._pump.pace(OUTPUT_PACE)
        log.info(
            "%sready in %.2fs (pid %d)", self._prefix, self.ready_at - self.started_at, self.pid
        )

    def _probe_target(self) -> tuple[str, int, str] | None:
        """(host, port, path) that readiness probes; None: nothing to probe, running is ready."""
        return self.spec.connect_host, self.port, "/health"

    async def _probe_unless_exit(self, limit: float) -> int | None:
        """One readiness probe (``GET /health``), abandoned as soon as the child exits.

        A port squatter that accepts but never answers would otherwise delay the report
        of our child's bind failure by the whole probe timeout.
        """
        target = self._probe_target()
        if target is None:
            return 200 if self.returncode is None else None
        host, port, path = target
        probe = asyncio.ensure_future(probe_health(host, port, limit, path))
        exit_wait = asyncio.ensure_future(self._exited.wait())
        try:
            await asyncio.wait({probe, exit_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exit_wait.cancel()
            if not probe.done():
                probe.cancel()
        return probe.result() if probe.done() and not probe.cancelled() else None

    async def _drained(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_WAIT):
                await self._eof.wait()

    async def _spawn_error(self) -> SpawnError:
        await self._drained()  # the last lines usually say why
        rc = self.returncode
        line = meaningful_line(self.tail(self.spec.ring_lines)) or "(no output)"
        return SpawnError(
            f"{self._exited_words(describe_exit(rc))} before it was ready: {line}",
            exit_code=rc,
            stderr_tail=self.tail(TAIL_IN_ERRORS),
        )

    def _timeout_error(self, ready_timeout: float) -> ReadinessTimeoutError:
        last = meaningful_line(self.tail(TAIL_IN_ERRORS)) or "(no output)"
        return ReadinessTimeoutError(
            f"{self._not_ready_words(ready_timeout)}; killed it. Last output: {last}",
            details=self.tail(TAIL_IN_ERRORS),
        )

    # the words of the two start errors: what runs, and what "not ready" means for it
    def _exited_words(self, exit_text: str) -> str:
        return f"llama-server {exit_text}"

    def _not_ready_words(self, ready_timeout: float) -> str:
        return f"llama-server on port {self.port} was not ready after {ready_timeout:g}s"

    def _kill_now(self, why: str) -> None:
        if self.returncode is None:
            log.info("%skilling pid %d: %s", self._prefix, self.pid, why)
        self._stopping = True
        self._control.hard_kill(self._proc)

    async def _wait_exit(self, limit: float) -> bool:
        if self._exited.is_set():
            return True
        try:
            async with asyncio.timeout(limit):
                await self._exited.wait()
        except TimeoutError:
            return False
        return True

    async def _stop(self, grace: float) -> int | None:
        self._stopping = True
        if self.returncode is None and not self._exited.is_set():
            log.info("%sstopping pid %d (grace %.1fs)", self._prefix, self.pid, grace)
            if self._pump is not None:
                self._pump.hurry()
            self._control.soft_stop(self._proc)
            if not await self._wait_exit(grace):
                log.warning(
                    "%spid %d still running %.1fs after SIGTERM; killing it",
                    self._prefix,
                    self.pid,
                    grace,
                )
                self._control.hard_kill(self._proc)
                if not await self._wait_exit(KILL_WAIT):
                    log.error(
                        "%spid %d survived SIGKILL for %.0fs", self._prefix, self.pid, KILL_WAIT
                    )
                    return None
        else:
            await self._wait_exit(KILL_WAIT)
        await self._drained()
        return self.returncode
