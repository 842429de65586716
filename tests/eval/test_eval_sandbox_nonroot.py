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
