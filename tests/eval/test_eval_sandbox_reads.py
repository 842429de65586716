"""The sandbox reads nothing of the host it does not need: not a 0600 file in a 0700
directory, not /etc/shadow, not other processes' command lines; yet it imports the standard
library of an interpreter that may live under a mode-700 home, with no capability at all."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamasc.eval.sandbox import SandboxLimits, run_program

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the full sandbox is Linux's")

ALL = SandboxLimits(timeout_s=20.0, cpu_seconds=5, memory_bytes=512 << 20)
# each kernel layer alone, where the host has it
NO_LANDLOCK = SandboxLimits(timeout_s=20.0, cpu_seconds=5, memory_bytes=512 << 20, landlock=False)
NO_NAMESPACES = SandboxLimits(
    timeout_s=20.0, cpu_seconds=5, memory_bytes=512 << 20, namespaces=False
)
LAYERS = pytest.mark.parametrize(
    "limits", [ALL, NO_LANDLOCK, NO_NAMESPACES], ids=["all", "no-landlock", "no-namespaces"]
)


def run(program: str, limits: SandboxLimits) -> tuple[str, str, str, list[str]]:
    r = asyncio.run(run_program(program, limits))
    return r.status, r.detail, r.output_tail, r.layers


READ_AND_PRINT = """
import sys
try:
    data = open({path!r}, 'rb').read()
except OSError as exc:
    print('refused:', type(exc).__name__)
    raise
sys.stdout.write('READ:' + data.decode(errors='replace'))
"""


@pytest.fixture
def secret_file() -> Iterator[tuple[Path, str]]:
    """A 0600 file in a 0700 directory, in the same /tmp the work directories are made in."""
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    directory = Path(tempfile.mkdtemp(prefix="llamasc-secret-"))
    try:
        directory.chmod(0o700)
        path = directory / "key.txt"
        path.write_text(secret)
        path.chmod(0o600)
        yield path, secret
    finally:
        path.unlink(missing_ok=True)
        directory.rmdir()


def _needs(limits: SandboxLimits, layers: list[str]) -> None:
    if limits is NO_NAMESPACES and not any(x.startswith("landlock") for x in layers):
        pytest.skip("without namespaces only Landlock stops these reads, and it is not here")


@LAYERS
def test_a_private_file_in_a_private_directory_cannot_be_read(
    secret_file: tuple[Path, str], limits: SandboxLimits
) -> None:
    path, secret = secret_file
    status, _, output, layers = run(READ_AND_PRINT.format(path=str(path)), limits)
    _needs(limits, layers)
    assert secret not in output
    assert status == "failed"
    assert "refused" in output


@LAYERS
def test_etc_shadow_cannot_be_read(limits: SandboxLimits) -> None:
    if not Path("/etc/shadow").exists():
        pytest.skip("no /etc/shadow on this host")
    status, _, output, layers = run(READ_AND_PRINT.format(path="/etc/shadow"), limits)
    _needs(limits, layers)
    assert "READ:" not in output
    assert status == "failed"


SCAN_PROC = """
import os
seen = []
try:
    pids = [p for p in os.listdir('/proc') if p.isdigit()]
except OSError:
    pids = []
for pid in pids:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as fh:
            seen.append(fh.read().replace(b'\\0', b' ').decode(errors='replace'))
    except OSError:
        pass
print('PIDS', len(pids))
print('CMDLINES', ' | '.join(seen))
"""


@pytest.mark.parametrize("limits", [ALL, NO_LANDLOCK], ids=["all", "private-proc-alone"])
def test_other_processes_command_lines_are_invisible(limits: SandboxLimits) -> None:
    secret = f"--api-key=s3cr3t-{uuid.uuid4().hex}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", secret],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        cmdline = Path(f"/proc/{holder.pid}/cmdline")
        while secret.encode() not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert secret.encode() in cmdline.read_bytes(), "the secret process never started"
        status, detail, output, layers = run(SCAN_PROC, limits)
    finally:
        holder.kill()
        holder.wait(30)
    if limits is NO_LANDLOCK and "private-proc" not in layers:
        pytest.skip("no private /proc on this host (needs a mount + PID namespace)")
    assert status == "passed", (detail, output)
    assert secret not in output
    assert "CMDLINES" in output


def test_the_standard_library_imports_with_no_capability_at_all() -> None:
    # modules the child itself never imported: each needs the interpreter's files
    program = (
        "import decimal, fractions, statistics, heapq, bisect, itertools, collections\n"
        "import hashlib, zlib, string, random, re, json, datetime, functools, typing\n"
        "assert str(decimal.Decimal(1) / 4) == '0.25'\n"
        "assert hashlib.sha256(b'').hexdigest().startswith('e3b0')\n"
        "assert zlib.decompress(zlib.compress(b'x')) == b'x'\n"
    )
    status, detail, output, layers = run(program, ALL)
    assert status == "passed", (detail, output)
    assert not any("dac_read_search" in layer for layer in layers), layers


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_started_as_root_the_program_holds_no_capability() -> None:
    # Landlock off so that the program may read its own /proc/self/status (a private /proc)
    program = (
        "import os\n"
        "caps = {}\n"
        "for line in open('/proc/self/status'):\n"
        "    key, _, value = line.partition(':')\n"
        "    if key.startswith('Cap'):\n"
        "        caps[key] = int(value, 16)\n"
        "print(caps)\n"
        "assert os.getuid() != 0 and os.geteuid() != 0\n"
        "assert caps['CapEff'] == caps['CapPrm'] == caps['CapBnd'] == 0, caps\n"
    )
    status, detail, output, _ = run(program, NO_LANDLOCK)
    assert status == "passed", (detail, output)
