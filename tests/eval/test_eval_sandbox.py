"""The HumanEval sandbox: hostile programs are contained, scored as failures, and the host is
unharmed. Each kernel layer is also tested alone where the host has it."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from llamasc.eval.data import load_items
from llamasc.eval.humaneval import self_check
from llamasc.eval.sandbox import SandboxLimits, probe_layers, run_program

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the full sandbox is Linux's")

DATA = Path(__file__).parent / "data"
FAST = SandboxLimits(timeout_s=2.0, cpu_seconds=2, memory_bytes=512 << 20)


def run(program: str, limits: SandboxLimits = FAST) -> tuple[str, str, list[str]]:
    result = asyncio.run(run_program(program, limits))
    return result.status, result.detail, result.layers


@pytest.fixture(scope="module")
def layers() -> list[str]:
    return asyncio.run(probe_layers())


def test_a_correct_program_passes_and_a_wrong_one_fails() -> None:
    assert run("import math\nassert math.isclose(math.pi, 3.14159, rel_tol=1e-5)\n")[0] == "passed"
    status, detail, _ = run("assert 1 + 1 == 3, 'arithmetic'\n")
    assert status == "failed"
    assert "AssertionError" in detail


def test_the_work_directory_is_private_and_writable() -> None:
    status, _, _ = run(
        "import os\nopen('x.txt', 'w').write('hi')\nassert open('x.txt').read() == 'hi'\n"
        "assert os.environ.get('HOME') == os.getcwd()\n"
        "assert 'PYTHONPATH' not in os.environ\n"
    )
    assert status == "passed"


def test_infinite_loop_is_killed_at_the_wall_clock() -> None:
    start = time.monotonic()
    status, detail, _ = run("while True:\n    pass\n", SandboxLimits(timeout_s=1.5, cpu_seconds=5))
    assert status == "timeout"
    assert "timed out" in detail
    assert time.monotonic() - start < 10


def test_cpu_limit_stops_a_busy_loop_before_the_wall_clock() -> None:
    status, detail, _ = run("while True:\n    pass\n", SandboxLimits(timeout_s=20, cpu_seconds=1))
    assert status == "failed"
    assert "killed by SIG" in detail


@pytest.mark.parametrize(
    "bomb",
    ["x = bytearray(64 << 30)\n", "a = []\nwhile True:\n    a.append(bytearray(50 << 20))\n"],
)
def test_memory_bombs_are_contained(bomb: str) -> None:
    # RLIMIT_AS stops the bomb, not the clock: a generous wall clock for a loaded box
    status, detail, _ = run(
        bomb, SandboxLimits(timeout_s=30, cpu_seconds=10, memory_bytes=512 << 20)
    )
    assert status == "failed", detail
    assert "MemoryError" in detail or "killed" in detail


def sandbox_processes() -> list[psutil.Process]:
    """Processes started from the sandbox's child script (forks keep its command line)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(part.endswith("_child.py") for part in cmdline):
            found.append(proc)
    return found


def wait_no_sandbox_processes(timeout: float = 5.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = sandbox_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = sandbox_processes()
    return left


def test_fork_bomb_is_contained_and_leaves_nothing_behind() -> None:
    status, _, _ = run("import os\nwhile True:\n    os.fork()\n")
    assert status in ("failed", "timeout")
    assert wait_no_sandbox_processes() == []


def test_a_detached_grandchild_does_not_survive() -> None:
    # the grandchild leaves the process group before its parent ends, so only the PID
    # namespace (or an equivalent) can catch it
    program = (
        "import os, time\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    os.write(w, b'x')\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "assert os.read(r, 1) == b'x'\n"
    )
    result = asyncio.run(run_program(program, FAST))
    assert result.status == "passed", result.output_tail
    assert wait_no_sandbox_processes() == []


def _outside() -> Path:
    return Path("/tmp") / f"llamasc-sbx-escape-{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    ("name", "limits", "needs"),
    [
        ("all layers", FAST, None),
        (
            "landlock alone",
            SandboxLimits(timeout_s=2, audit_hook=False, namespaces=False),
            "landlock",
        ),
        ("audit hook alone", SandboxLimits(timeout_s=2, landlock=False, namespaces=False), None),
    ],
)
def test_writing_outside_the_work_directory_is_refused(
    name: str, limits: SandboxLimits, needs: str | None, layers: list[str]
) -> None:
    if needs and not any(layer.startswith(needs) for layer in layers):
        pytest.skip(f"{needs} is not available on this host")
    target = _outside()
    status, detail, _ = run(f"open({str(target)!r}, 'w').write('pwned')\n", limits)
    assert status == "failed", name
    assert "Permission" in detail or "sandbox" in detail
    assert not target.exists()


@pytest.mark.parametrize(
    ("name", "limits", "needs"),
    [
        ("all layers", FAST, None),
        (
            "network namespace alone",
            SandboxLimits(timeout_s=2, audit_hook=False, landlock=False),
            "netns",
        ),
        (
            "landlock alone",
            SandboxLimits(timeout_s=2, audit_hook=False, namespaces=False),
            "landlock-v",
        ),
        ("audit hook alone", SandboxLimits(timeout_s=2, landlock=False, namespaces=False), None),
    ],
)
def test_connecting_a_socket_is_refused(
    name: str, limits: SandboxLimits, needs: str | None, layers: list[str]
) -> None:
    if needs == "netns" and "netns" not in layers:
        pytest.skip("network namespaces are not available on this host")
    if needs == "landlock-v":
        abi = max((int(x.split("-v")[1]) for x in layers if x.startswith("landlock-v")), default=0)
        if abi < 4:
            pytest.skip("Landlock network rules need ABI 4")
    # something that listens on the host's loopback, so a connection would really succeed
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        program = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), 2)\n"
        status, detail, _ = run(program, limits)
    finally:
        server.close()
    assert status == "failed", name
    assert any(w in detail for w in ("Permission", "sandbox", "unreachable", "refused"))


def test_exiting_early_with_status_zero_is_not_a_pass() -> None:
    status, detail, _ = run("import os\nos._exit(0)\nassert False\n")
    assert status == "failed"
    assert "exited before" in detail


def test_shell_escapes_are_refused() -> None:
    status, detail, _ = run("import os\nos.system('true')\n")
    assert status == "failed"
    assert "sandbox" in detail


def test_self_check_passes_every_canonical_solution_of_the_fixture() -> None:
    items = load_items("humaneval", DATA / "humaneval_small.jsonl")
    check = asyncio.run(self_check(items, SandboxLimits(timeout_s=10), concurrency=2))
    assert (check.passed, check.total) == (len(items), len(items)), check.failures
    assert check.layers


def test_a_broken_solution_fails_the_self_check() -> None:
    items = load_items("humaneval", DATA / "humaneval_small.jsonl")[:2]
    from llamasc.eval.data import Item

    broken = [
        Item(i.id, i.benchmark, {**i.row, "canonical_solution": "    return None\n"}) for i in items
    ]
    check = asyncio.run(self_check(broken, SandboxLimits(timeout_s=10), concurrency=2))
    assert check.passed == 0
    assert len(check.failures) == 2


def test_sleeping_children_are_reaped_after_each_sample() -> None:
    for _ in range(3):
        run("import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        time.sleep(30)\n")
    assert wait_no_sandbox_processes() == []
