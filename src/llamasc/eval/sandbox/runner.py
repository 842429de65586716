"""The parent side of the sandbox: spawn, time out, kill the whole group, classify.

Each program runs as ``python -I`` (no user site, no PYTHON* variables, no script directory on
sys.path) started through ``_child.py``, which locks itself down before running the program
(see that module for the layers). Here we add what only the parent can enforce:

* a fresh temporary directory per sample as the working directory (owned by the sandbox's own
  uid, leased from a range by ``uids.lease_uid``, when we run as root), removed afterwards;
* in ``run_check`` the tests and the prompt in a file beside it (0600), which only the
  harness reads, through a descriptor its starter opened;
* a minimal environment (PATH, LANG, HOME and TMPDIR pointing at the work directory);
* its own session and process group, and a wall-clock timeout after which the whole group is
  SIGKILLed; the group is killed again after a normal exit so no straggler survives;
* stdout/stderr into a file outside the work directory (the program cannot open it again, and
  RLIMIT_FSIZE bounds it); we keep its tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CHILD = Path(__file__).with_name("_child.py")
NOBODY = 65534


@dataclass(frozen=True)
class SandboxLimits:
    """Per-sample limits. ``namespaces``/``landlock``/``audit_hook`` exist to test each layer."""

    timeout_s: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    fsize_bytes: int = 16 << 20
    nproc: int = 32
    nofile: int = 64
    namespaces: bool = True
    landlock: bool = True
    audit_hook: bool = True


@dataclass
class ExecResult:
    """What happened to one program."""

    status: str  # passed | failed | timeout | error
    detail: str = ""
    returncode: int | None = None
    duration_s: float = 0.0
    output_tail: str = ""
    layers: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _minimal_env(workdir: Path) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
    }
    if sys.platform == "win32":  # Windows needs these to start any process at all
        for var in ("SYSTEMROOT", "SYSTEMDRIVE", "COMSPEC"):
            if var in os.environ:
                env[var] = os.environ[var]
    return env


def _kill_group(pid: int) -> None:
    if sys.platform == "win32":
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _classify(
    rc: int | None, timed_out: bool, report: str, tail: str, timeout_s: float
) -> tuple[str, str, list[str]]:
    """Only the harness writes the report (the program has no descriptor of it)."""
    layers: list[str] = []
    verdict: dict[str, str] | None = None
    for line in report.splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            obj = json.loads(line)
            if "layers" in obj:
                layers = list(obj["layers"])
            elif "verdict" in obj:
                verdict = obj
    if timed_out:
        return "timeout", f"timed out after {timeout_s:g}s (process group killed)", layers
    if verdict is not None and verdict.get("verdict") == "passed" and rc == 0:
        return "passed", "", layers
    last = next((ln for ln in reversed(tail.strip().splitlines()) if ln.strip()), "")
    if verdict is not None and verdict.get("detail"):
        return "failed", str(verdict["detail"])[:300], layers
    if rc is not None and (rc < 0 or rc > 128):
        sig = -rc if rc < 0 else rc - 128
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return "failed", f"killed by {name} (a CPU, memory or file-size limit?)", layers
    return "failed", last[:300] or f"exit status {rc}", layers


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


async def run_program(program: str, limits: SandboxLimits | None = None) -> ExecResult:
    """Run one untrusted Python program in the sandbox: "passed" when it ran to its end.

    The program judges itself here (it could claim to have finished); to judge a function
    by tests it cannot touch, use ``run_check``."""
    return await _run(program, None, limits or SandboxLimits())


async def run_check(
    solution: str, prompt: str, test: str, entry_point: str, limits: SandboxLimits | None = None
) -> ExecResult:
    """Run ``solution`` (untrusted: the prompt plus the model's code) and judge its
    ``entry_point`` by ``test``'s ``check(candidate)``, run with the dataset's ``prompt`` in a
    separate harness process the program cannot write to, signal or trace."""
    spec = {"prompt": prompt, "test": test, "entry_point": entry_point}
    return await _run(solution, spec, limits or SandboxLimits())


async def _run(program: str, check: dict[str, str] | None, limits: SandboxLimits) -> ExecResult:
    with contextlib.ExitStack() as stack:
        uid = NOBODY
        if _as_root() and sys.platform.startswith("linux"):
            from llamasc.eval.sandbox.uids import lease_uid

            uid = stack.enter_context(lease_uid())
        return await _run_as(program, check, limits, uid)
    raise AssertionError("unreachable")  # pragma: no cover - for mypy


async def _run_as(
    program: str, check: dict[str, str] | None, limits: SandboxLimits, uid: int
) -> ExecResult:
    base = Path(tempfile.mkdtemp(prefix="llamasc-sbx-"))
    start = time.perf_counter()
    try:
        work = base / "work"
        work.mkdir()
        (work / "prog.py").write_text(program, encoding="utf-8")
        if _as_root():
            # the child becomes ``uid``: it needs its directory, and nothing else of ours
            os.chmod(base, 0o711)  # noqa: S103 - search only: the child needs to reach work/
            os.chown(work, uid, uid)
            os.chmod(work / "prog.py", 0o644)
        report_path = base / "report.txt"
        report_path.write_bytes(b"")
        test_path = base / "test.json"
        test_path.write_text(json.dumps(check or {}), encoding="utf-8")
        for path in (report_path, test_path):
            os.chmod(path, 0o600)  # opened by the child's starter while still root
        config = {
            "mode": "check" if check else "program",
            "entry_point": (check or {}).get("entry_point", ""),
            "uid": uid,
            "report_path": str(report_path),
            "test_path": str(test_path),
            "cpu_seconds": limits.cpu_seconds,
            "memory_bytes": limits.memory_bytes,
            "fsize_bytes": limits.fsize_bytes,
            "nproc": limits.nproc,
            "nofile": limits.nofile,
            "namespaces": limits.namespaces,
            "landlock": limits.landlock,
            "audit_hook": limits.audit_hook,
        }
        out_path = base / "output.txt"
        with out_path.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                str(CHILD),
                json.dumps(config),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=work,
                env=_minimal_env(work),
                start_new_session=True,
            )
            timed_out = False
            try:
                rc: int | None = await asyncio.wait_for(proc.wait(), limits.timeout_s)
            except TimeoutError:
                timed_out = True
                _kill_group(proc.pid)
                rc = await proc.wait()
            except BaseException:
                _kill_group(proc.pid)
                await asyncio.shield(proc.wait())
                raise
            _kill_group(proc.pid)  # stragglers that outlived the program
        report = report_path.read_bytes()[:65536]
        with out_path.open("rb") as fh:
            fh.seek(max(0, out_path.stat().st_size - 4096))
            tail = fh.read().decode("utf-8", errors="replace")
        status, detail, layers = _classify(
            rc, timed_out, report.decode(errors="replace"), tail, limits.timeout_s
        )
        return ExecResult(
            status=status,
            detail=detail,
            returncode=rc,
            duration_s=time.perf_counter() - start,
            output_tail=tail[-1000:],
            layers=layers,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def probe_layers(limits: SandboxLimits | None = None) -> list[str]:
    """The isolation layers this host actually applies (runs a trivial program)."""
    result = await run_program("pass\n", limits)
    return result.layers


__all__ = ["ExecResult", "SandboxLimits", "probe_layers", "run_check", "run_program"]
