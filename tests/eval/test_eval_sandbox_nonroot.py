"""The sandbox started by an ordinary user, who has no root to drop: the same threats, contained.

The other sandbox tests run as whatever runs pytest, root on CI, where the sandbox also switches
the program to uid 65534. Here the sandbox itself runs as uid 65534 (through ``setpriv``), from a
copy of its modules (they need only the standard library) and with a Python that user can read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

NOBODY = 65534
SANDBOX_SRC = Path(__file__).resolve().parents[2] / "src" / "llamasc" / "eval" / "sandbox"

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the full sandbox is Linux's"),
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="not root: the other sandbox tests already run the sandbox as an ordinary user",
    ),
]

# Run as uid 65534: each program's status and the layers the sandbox applied, as JSON.
SCRIPT = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from llamasc.eval.sandbox import SandboxLimits, run_program
programs = json.loads(sys.argv[2])
limits = SandboxLimits(timeout_s=3.0, cpu_seconds=2, memory_bytes=512 << 20)
out = {}
for name, program in programs.items():
    r = asyncio.run(run_program(program, limits))
    out[name] = {"status": r.status, "detail": r.detail, "layers": r.layers}
print(json.dumps(out))
"""


def _as_nobody(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


def _python_for_nobody() -> str | None:
    """An interpreter uid 65534 can run with its standard library (ours might sit in a
    directory that user may not enter)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if candidate and Path(candidate).exists():
            # the sandbox starts sys.executable again for each program: it must be reachable
            check = "import asyncio, ctypes, json, os, sys; assert os.access(sys.executable, 1)"
            probe = _as_nobody([candidate, "-I", "-c", check], timeout=30)
            if probe.returncode == 0:
                return candidate
    return None


@pytest.fixture
def sandbox_copy() -> Iterator[Path]:
    """The sandbox modules under a directory every user can read, as package llamasc.eval."""
    root = Path(tempfile.mkdtemp(prefix="llamasc-sbx-nonroot-"))
    try:
        pkg = root / "llamasc" / "eval" / "sandbox"
        pkg.mkdir(parents=True)
        (root / "llamasc" / "__init__.py").write_text("")
        (root / "llamasc" / "eval" / "__init__.py").write_text("")
        for module in SANDBOX_SRC.glob("*.py"):
            shutil.copy(module, pkg / module.name)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _nobody_processes() -> list[int]:
    out = []
    for p in psutil.process_iter(["uids"]):
        uids = p.info.get("uids")
        if uids is not None and uids.real == NOBODY:
            out.append(p.pid)
    return out


def test_the_sandbox_contains_the_same_threats_when_started_by_an_ordinary_user(
    sandbox_copy: Path,
) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    python = _python_for_nobody()
    if python is None:
        pytest.skip("no Python interpreter that uid 65534 may run")
    before = set(_nobody_processes())
    outside = Path(tempfile.gettempdir()) / f"llamasc-sbx-escape-{uuid.uuid4().hex}"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    programs = {
        "correct": "assert sorted([3, 1, 2]) == [1, 2, 3]\n",
        "wrong": "assert 1 + 1 == 3\n",
        # /tmp is world-writable: only the sandbox stands between this program and the file
        "write_outside": f"open({str(outside)!r}, 'w').write('pwned')\n",
        # something listens on loopback, so a connection would really succeed
        "connect": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2)\n",
        "shell": "import os\nos.system('true')\n",
        "busy_loop": "while True:\n    pass\n",
        "fork_bomb": "import os\nwhile True:\n    os.fork()\n",
    }
    try:
        done = _as_nobody(
            [python, "-I", "-c", SCRIPT, str(sandbox_copy), json.dumps(programs)],
            cwd=sandbox_copy,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            timeout=120,
        )
    finally:
        listener.close()
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    status = {name: r["status"] for name, r in results.items()}
    assert status["correct"] == "passed", results["correct"]
    assert status["wrong"] == "failed"
    assert status["write_outside"] == "failed", results["write_outside"]
    assert not outside.exists()
    assert status["connect"] == "failed", results["connect"]
    assert status["shell"] == "failed"
    assert "sandbox" in results["shell"]["detail"]
    assert status["busy_loop"] in ("timeout", "failed")
    assert status["fork_bomb"] in ("timeout", "failed")
    assert results["correct"]["layers"], "the sandbox reported no layer at all"
    # nothing the programs started outlives them
    deadline = time.monotonic() + 10
    while set(_nobody_processes()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(_nobody_processes()) - before
    print("layers as an ordinary user:", results["correct"]["layers"])


def _nobody_python() -> str:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    python = _python_for_nobody()
    if python is None:
        pytest.skip("no Python interpreter that uid 65534 may run")
    return python


def _run_script(sandbox_copy: Path, script: str, *args: str) -> dict[str, dict[str, object]]:
    done = _as_nobody(
        [_nobody_python(), "-I", "-c", script, str(sandbox_copy), *args],
        cwd=sandbox_copy,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# Like SCRIPT, with each program's output too.
SCRIPT_OUTPUT = SCRIPT.replace(
    '"layers": r.layers}', '"layers": r.layers, "output": r.output_tail}'
)
SCAN_PROC = """
import os
seen = []
try:
    pids = [p for p in os.listdir('/proc') if p.isdigit()]
except OSError:
    pids = []
for pid in pids:
    try:
        seen.append(open(f'/proc/{pid}/cmdline', 'rb').read().decode(errors='replace'))
    except OSError:
        pass
print('CMDLINES', ' | '.join(seen))
"""


def test_an_ordinary_users_sandbox_reads_neither_that_users_private_files_nor_command_lines(
    sandbox_copy: Path,
) -> None:
    # the file belongs to the very user the sandbox runs as: file modes do not stop it, only
    # the sandbox's read rules do
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    private = Path(tempfile.mkdtemp(prefix="llamasc-nobody-home-"))
    key = private / "key.txt"
    key.write_text(secret)
    key.chmod(0o600)
    os.chown(key, NOBODY, NOBODY)
    os.chown(private, NOBODY, NOBODY)
    private.chmod(0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", f"--api-key={secret}"],
        stdin=subprocess.DEVNULL,
    )
    programs = {
        "read_private": f"print('READ', open({str(key)!r}).read())\n",
        "scan_proc": SCAN_PROC,
    }
    try:
        deadline = time.monotonic() + 30
        while secret.encode() not in Path(f"/proc/{holder.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the secret process never started"
            time.sleep(0.02)
        results = _run_script(sandbox_copy, SCRIPT_OUTPUT, json.dumps(programs))
    finally:
        holder.kill()
        holder.wait(30)
        shutil.rmtree(private, ignore_errors=True)
    assert results["read_private"]["status"] == "failed", results["read_private"]
    assert secret not in str(results["read_private"]["output"])
    assert results["scan_proc"]["status"] == "passed", results["scan_proc"]
    assert secret not in str(results["scan_proc"]["output"])


# Run as uid 65534: one sandbox forks up to its limit and holds it while three others fork.
SCRIPT_NPROC = """
import asyncio, json, os, sys, time
sys.path.insert(0, sys.argv[1])
from llamasc.eval.sandbox import SandboxLimits, run_program
hog_program, forker, nproc = sys.argv[2], sys.argv[3], int(sys.argv[4])

def sandbox_processes():
    n = 0
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            if b'_child.py' in open(f'/proc/{pid}/cmdline', 'rb').read():
                n += 1
        except OSError:
            pass
    return n

async def main():
    hog = asyncio.create_task(run_program(hog_program, SandboxLimits(timeout_s=120, nproc=nproc)))
    deadline = time.monotonic() + 60
    while sandbox_processes() < nproc and time.monotonic() < deadline and not hog.done():
        await asyncio.sleep(0.05)
    held = sandbox_processes()
    limits = SandboxLimits(timeout_s=60, cpu_seconds=20, nproc=nproc)
    others = await asyncio.gather(*(run_program(forker, limits) for _ in range(3)))
    holding = not hog.done()
    hog.cancel()
    try:
        await hog
    except asyncio.CancelledError:
        pass
    out = {"hog": {"held": held, "holding": holding}}
    for i, r in enumerate(others):
        out[f"other{i}"] = {"status": r.status, "detail": r.detail + r.output_tail}
    print(json.dumps(out))

asyncio.run(main())
"""


def test_an_ordinary_users_concurrent_sandboxes_each_have_their_own_process_limit(
    sandbox_copy: Path,
) -> None:
    from test_eval_sandbox_nproc import FORKER, HOG, NPROC

    results = _run_script(sandbox_copy, SCRIPT_NPROC, HOG, FORKER, str(NPROC))
    assert results["hog"]["holding"], results
    assert int(str(results["hog"]["held"])) >= NPROC, results
    for i in range(3):
        assert results[f"other{i}"]["status"] == "passed", results
