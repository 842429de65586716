"""The sweep: for each model x arm, start a server, warm it up, measure, stop it for sure.

Resumable by construction: the plan is what the results file does not hold yet, and every
request is written the moment it is answered. Whatever happens (Ctrl-C, a dropped SSH
connection, a crash of the server), the server of the current cell is stopped before the
exception leaves, with Ctrl-C deferred until that is done.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from llamasc.bench.arms import Arm
from llamasc.bench.events import (
    CellFinished,
    CellSkipped,
    CellStarting,
    CellUnsupported,
    Event,
    RequestDone,
    SweepStarted,
)
from llamasc.bench.models import BenchModel
from llamasc.bench.prompts import Prompt
from llamasc.bench.records import ARM_MARKER_PROMPT, SCHEMA, ResultStore, done_keys, record_key
from llamasc.errors import (
    DaemonUnreachableError,
    ReadinessTimeoutError,
    RemoteError,
    SpawnError,
    UpstreamError,
)
from llamasc.process.spec import LaunchSpec
from llamasc.remote.launch import HostLauncher, RunningServer
from llamasc.remote.probe import LOCAL_HOSTS

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from llamasc.client import ChatClient, Completion

log = logging.getLogger(__name__)

TIMING_FIELDS = (
    "cache_n",
    "prompt_n",
    "prompt_ms",
    "predicted_n",
    "predicted_ms",
    "draft_n",
    "draft_n_accepted",
    "prompt_per_second",
    "predicted_per_second",
)


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep and how each request is made."""

    host: str
    models: Sequence[BenchModel]
    arms: Sequence[Arm]
    prompts: Sequence[Prompt]
    binary: str | None = None  # None: each model's own (llama-swap cmd) or the host default
    default_binary: str = "llama-server"
    reps: int = 3
    max_tokens: int = 256
    seed: int = 42
    temperature: float = 0.0
    ctx_size: int = 32768
    parallel: int = 1
    start_timeout: float = 600.0
    request_timeout: float = 600.0
    retry_unsupported: bool = False
    # host environment variables passed to llama-server on purpose (all that would steer it,
    # LLAMA_ARG_* and the like, are scrubbed otherwise)
    keep_env: Sequence[str] = ()

    def binary_for(self, model: BenchModel) -> str:
        return self.binary or model.binary or self.default_binary

    def server_flags(self, model: BenchModel, arm: Arm) -> tuple[str, ...]:
        """Everything but binary, ``--host`` and ``--port``: the comparable part of a command
        line (what records keep)."""
        return ("-m", model.path, *self.model_flags(model, arm))

    def model_flags(self, model: BenchModel, arm: Arm) -> tuple[str, ...]:
        """The flags of :meth:`server_flags` after the model: ``LaunchSpec.args``."""
        return (
            "--ctx-size",
            str(self.ctx_size),
            "--parallel",
            str(self.parallel),
            *model.flags,
            *arm.flags,
        )


@dataclass
class Cell:
    """One (model, arm) and the (prompt, rep) pairs it still has to measure."""

    model: BenchModel
    arm: Arm
    binary: str
    build: str
    pending: list[tuple[Prompt, int]] = field(default_factory=list)
    done: int = 0  # measured by earlier runs
    finished: int = 0  # pending requests answered (ok or error) in this run


@dataclass
class SweepSummary:
    """What a sweep did."""

    measured: int = 0
    errors: int = 0
    skipped: int = 0
    unsupported: list[str] = field(default_factory=list)
    failed_cells: list[str] = field(default_factory=list)
    reaped: list[str] = field(default_factory=list)
    torn_tail_bytes: int = 0
    changed_flags: list[str] = field(default_factory=list)


class _Deferred:
    """Hold SIGINT/SIGTERM while a server is being stopped; re-raise afterwards."""

    def __init__(self) -> None:
        self._got: list[int] = []
        self._saved: dict[int, Any] = {}

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self._got.append(signum)

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._hold)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._got and exc_type is None:
            raise KeyboardInterrupt


class _CellFailed(Exception):
    """The server of a cell died or could not serve at all: the cell ends, the sweep goes on."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Sweep:
    """Runs a :class:`SweepConfig` on one launcher into one results file."""

    def __init__(
        self,
        config: SweepConfig,
        launcher: HostLauncher,
        store: ResultStore,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.config = config
        self.launcher = launcher
        self.store = store
        self.on_event = on_event or (lambda _e: None)
        self.summary = SweepSummary()
        self._builds: dict[str, str] = {}

    # -- planning --------------------------------------------------------------------------

    def build_of(self, binary: str) -> str:
        if binary not in self._builds:
            self._builds[binary] = self.launcher.version(binary)
        return self._builds[binary]

    def _key(self, cell: Cell, prompt_id: str, rep: int) -> str:
        return record_key(
            host=self.config.host,
            model=cell.model.id,
            arm=cell.arm.name,
            prompt_id=prompt_id,
            rep=rep,
            build=cell.build,
        )

    def plan(self, records: Sequence[dict[str, Any]]) -> list[Cell]:
        """Every cell with what it still needs, given the records already written."""
        done = done_keys(records, retry_unsupported=self.config.retry_unsupported)
        flags_seen = {
            (r.get("model"), r.get("arm"), r.get("build")): r.get("flags")
            for r in records
            if r.get("status") == "ok"
        }
        cells: list[Cell] = []
        for model in self.config.models:
            binary = self.config.binary_for(model)
            build = self.build_of(binary)
            for arm in self.config.arms:
                cell = Cell(model=model, arm=arm, binary=binary, build=build)
                old = flags_seen.get((model.id, arm.name, build))
                if old is not None and old != list(self.config.server_flags(model, arm)):
                    self.summary.changed_flags.append(f"{model.id}/{arm.name}")
                if self._key(cell, ARM_MARKER_PROMPT, -1) in done:
                    self.summary.unsupported.append(f"{model.id}/{arm.name}")
                    cells.append(cell)  # recorded as unsupported before: nothing to do
                    continue
                for rep in range(self.config.reps):
                    for prompt in self.config.prompts:
                        if self._key(cell, prompt.id, rep) in done:
                            cell.done += 1
                        else:
                            cell.pending.append((prompt, rep))
                cells.append(cell)
        return cells

    # -- records ---------------------------------------------------------------------------

    def _base_record(self, cell: Cell, server: RunningServer | None) -> dict[str, Any]:
        cfg = self.config
        return {
            "schema": SCHEMA,
            "ts": _now(),
            "host": cfg.host,
            "host_os": self.launcher.os_name,
            "model": cell.model.id,
            "model_path": cell.model.path,
            "arm": cell.arm.name,
            "arm_flags": list(cell.arm.flags),
            "flags": list(cfg.server_flags(cell.model, cell.arm)),
            "argv": list(server.argv) if server else None,
            "build": cell.build,
            "ctx_size": cfg.ctx_size,
            "parallel": cfg.parallel,
            "seed": cfg.seed,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
        }

    def _write(self, record: dict[str, Any], cell: Cell | None = None) -> None:
        self.store.append(record)
        if cell is not None:
            cell.finished += 1

    # -- running ---------------------------------------------------------------------------

    def run(self, records: Sequence[dict[str, Any]]) -> SweepSummary:
        """Run every pending cell. ``records`` are the ones already in the results file."""
        from anyio.from_thread import start_blocking_portal

        self.summary.reaped = self.launcher.reap_stale()
        cells = self.plan(records)
        total = sum(len(c.pending) for c in cells)
        self.summary.skipped = sum(c.done for c in cells)
        self.on_event(
            SweepStarted(
                total=total,
                skipped=self.summary.skipped,
                cells=len(cells),
                reaped=tuple(self.summary.reaped),
                torn_tail_bytes=self.summary.torn_tail_bytes,
                changed_flags=tuple(self.summary.changed_flags),
            )
        )
        with start_blocking_portal("asyncio") as portal:
            for cell in cells:
                if not cell.pending:
                    self.on_event(CellSkipped(model=cell.model.id, arm=cell.arm.name))
                    continue
                self._run_cell(cell, portal)
        return self.summary

    def _spec(self, cell: Cell) -> LaunchSpec:
        return LaunchSpec(
            binary=self._host_path(cell.binary),
            model_path=self._host_path(cell.model.path),
            args=self.config.model_flags(cell.model, cell.arm),
            env=dict(cell.model.env),
            label=f"{cell.model.id}/{cell.arm.name}",
            keep_env=tuple(self.config.keep_env),
        )

    def _host_path(self, text: str) -> PurePath:
        """A path of the bench host, in that host's form (kept as written, never resolved)."""
        if self.launcher.host in LOCAL_HOSTS:
            return Path(text)
        return PureWindowsPath(text) if self.launcher.os_name == "windows" else PurePosixPath(text)

    def _run_cell(self, cell: Cell, portal: BlockingPortal) -> None:
        model, arm = cell.model.id, cell.arm.name
        label = f"{model}/{arm}"
        self.on_event(CellStarting(model=model, arm=arm, requests=len(cell.pending)))
        try:
            server = self.launcher.start(self._spec(cell), timeout=self.config.start_timeout)
        except SpawnError as exc:
            record = self._base_record(cell, None)
            record.update(
                key=self._key(cell, ARM_MARKER_PROMPT, -1),
                prompt_id=ARM_MARKER_PROMPT,
                category=None,
                rep=-1,
                status="unsupported",
                error=exc.message,
                exit_code=exc.returncode,
                stderr_tail=list(exc.stderr_tail),
            )
            self._write(record)
            self.summary.unsupported.append(label)
            self.on_event(
                CellUnsupported(model=cell.model.id, arm=cell.arm.name, error=exc.message)
            )
            return
        except ReadinessTimeoutError as exc:
            self.summary.failed_cells.append(label)
            self.on_event(
                CellFinished(model=model, arm=arm, error=exc.message, abandoned=len(cell.pending))
            )
            return
        error: str | None = None
        try:
            self._measure_cell(cell, server, portal)
        except _CellFailed as exc:
            error = str(exc)
            self.summary.failed_cells.append(label)
        finally:
            with _Deferred():
                self.launcher.stop(server)
        self.on_event(
            CellFinished(
                model=model, arm=arm, error=error, abandoned=len(cell.pending) - cell.finished
            )
        )

    def _measure_cell(self, cell: Cell, server: RunningServer, portal: BlockingPortal) -> None:
        from llamasc.client import ChatClient

        client = ChatClient(server.base_url, timeout=self.config.request_timeout)
        try:
            props: dict[str, Any] = {}
            try:
                props = portal.call(client.props)
            except (UpstreamError, DaemonUnreachableError) as exc:
                log.warning("%s: GET /props failed: %s", server.base_url, exc)
            build_info = props.get("build_info")
            n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
            total_slots = props.get("total_slots")
            warm = cell.pending[0][0]
            try:
                self._request(client, warm, server, portal)  # warm-up: discarded
            except (UpstreamError, DaemonUnreachableError) as exc:
                raise _CellFailed(f"the warm-up request failed: {exc.message}") from exc
            for prompt, rep in cell.pending:
                record = self._base_record(cell, server)
                record.update(
                    key=self._key(cell, prompt.id, rep),
                    prompt_id=prompt.id,
                    category=prompt.category,
                    rep=rep,
                    build_info=build_info,
                    n_ctx=n_ctx,
                    total_slots=total_slots,
                )
                try:
                    done = self._request(client, prompt, server, portal)
                except (UpstreamError, DaemonUnreachableError) as exc:
                    record.update(status="error", error=exc.message)
                    self._write(record, cell)
                    self.summary.errors += 1
                    self.on_event(RequestDone(record=record))
                    continue
                record.update(
                    status="ok",
                    error=None,
                    timings={k: done.timings[k] for k in TIMING_FIELDS if k in done.timings},
                    usage=done.usage,
                    finish_reason=done.finish_reason,
                    ttft_s=done.ttft_s,
                    e2e_s=done.elapsed_s,
                    output_chars=len(done.text),
                )
                self._write(record, cell)
                self.summary.measured += 1
                self.on_event(RequestDone(record=record))
        finally:
            portal.call(client.aclose)

    def _request(
        self, client: ChatClient, prompt: Prompt, server: RunningServer, portal: BlockingPortal
    ) -> Completion:
        """One streamed request; one retry when the link (not the server) failed."""
        call = functools.partial(
            client.chat,
            [dict(m) for m in prompt.messages],
            stream=True,
            max_tokens=self.config.max_tokens,
            seed=self.config.seed,
            temperature=self.config.temperature,
            cache_prompt=False,
        )
        for attempt in (1, 2):
            try:
                completion: Completion = portal.call(call)
                return completion
            except (UpstreamError, DaemonUnreachableError) as exc:
                alive = self._alive(server)
                if not alive:
                    raise _CellFailed(f"llama-server stopped answering: {exc.message}") from exc
                if attempt == 2:
                    raise
                log.warning("request failed (%s); the server is up, retrying once", exc.message)
        raise AssertionError("unreachable")

    def _alive(self, server: RunningServer) -> bool:
        """After a failed request: is the server still there (reconnecting if need be)?"""
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            try:
                state = self.launcher.alive(server)
            except RemoteError as exc:  # reconnecting failed; give it the deadline
                log.warning("health check failed: %s", exc)
                state = None
            if state is not None:
                return state
            time.sleep(0.5)
        return False


def run_sweep(
    config: SweepConfig,
    launcher: HostLauncher,
    store: ResultStore,
    *,
    on_event: Callable[[Event], None] | None = None,
) -> SweepSummary:
    """Load what ``store`` holds (repairing a torn last line), then run what is missing."""
    loaded = store.load(repair=True)
    sweep = Sweep(config, launcher, store, on_event)
    sweep.summary.torn_tail_bytes = len(loaded.torn_tail or b"")
    with store:
        return sweep.run(loaded.records)


__all__ = ["Cell", "Sweep", "SweepConfig", "SweepSummary", "run_sweep"]
