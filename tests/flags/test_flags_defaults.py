"""DEFAULT_BASE_ARGS and the upgrade of llama-sidecar's legacy BASE_ARGS."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from llamasc.flags import (
    DEFAULT_BASE_ARGS,
    FlagPolicy,
    fix_legacy_base_args,
    merge_flags,
    table_from_help,
    validate_flags,
)
from llamasc.flags.help import parse_help_text, table_for_help
from llamasc.flags.table import load_default_table

SIDECAR_DEFAULT = ["-ngl", "999", "-c", "32768", "--flash-attn", "on", "--no-mmap"]


def test_default_base_args_are_valid_operator_flags() -> None:
    v = validate_flags(DEFAULT_BASE_ARGS, FlagPolicy.operator())
    assert v.ok, v.problems
    assert v.canonical == (
        "--ctx-size", "32768", "--flash-attn", "on", "--gpu-layers", "999", "--load-mode", "none",
    )  # fmt: skip


def test_llama_sidecars_default_is_refused_as_is_and_fixed_to_ours() -> None:
    assert not validate_flags(SIDECAR_DEFAULT, FlagPolicy.operator()).ok
    fixed, notes = fix_legacy_base_args(SIDECAR_DEFAULT)
    assert fixed == DEFAULT_BASE_ARGS
    assert len(notes) == 1
    assert "--no-mmap" in notes[0]
    assert "-lm none" in notes[0]


@pytest.mark.parametrize(
    ("args", "fixed"),
    [
        (["--no-mmap"], ["-lm", "none"]),
        (["--mmap"], ["-lm", "mmap"]),
        (["--mlock"], ["-lm", "mmap+mlock"]),
        (["--no-mmap", "--mlock"], ["-lm", "mlock"]),
        (["--mlock", "-c", "5", "--no-mmap"], ["-lm", "mlock", "-c", "5"]),
        (["--no-mmap", "--mmap"], ["-lm", "mmap"]),
        (["-c", "1"], ["-c", "1"]),
    ],
)
def test_legacy_memory_switches_become_load_mode(args: list[str], fixed: list[str]) -> None:
    out, notes = fix_legacy_base_args(args)
    assert list(out) == fixed
    assert bool(notes) == (out != tuple(args))
    assert validate_flags(list(out), FlagPolicy.operator()).ok


def test_a_legacy_spelling_in_a_value_slot_is_left_alone() -> None:
    assert fix_legacy_base_args(["-r", "--mlock", "-c", "1"]) == (("-r", "--mlock", "-c", "1"), [])


def test_legacy_flags_stay_when_the_binary_still_has_them() -> None:
    old_help = "--no-mmap                               do not memory-map model\n"
    old_help += "-c,    --ctx-size N                     size of the prompt context\n"
    table = table_for_help(parse_help_text(old_help), load_default_table(), binary="old")
    # an old binary that lists --no-mmap: keep it (it is then a flag unknown to our TSV)
    assert fix_legacy_base_args(["--no-mmap", "-c", "1"], table) == (("--no-mmap", "-c", "1"), [])
    assert validate_flags("--no-mmap -c 1", FlagPolicy.operator(), table).ok
    assert "not in llamasc's table" in validate_flags("--no-mmap", table=table).problems[0]


def test_merging_user_flags_over_the_defaults() -> None:
    merged = merge_flags(DEFAULT_BASE_ARGS, validate_flags("-c 512 --top-k 5").canonical)
    assert merged == (
        "--ctx-size", "512", "--flash-attn", "on", "--gpu-layers", "999", "--load-mode", "none",
        "--top-k", "5",
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.real
def test_real_llama_server_starts_healthy_with_the_default_base_args(
    llama_server_bin: Path, smollm2_path: Path, tmp_path: Path
) -> None:
    table = table_from_help(llama_server_bin)
    assert validate_flags(DEFAULT_BASE_ARGS, FlagPolicy.operator(), table).ok
    # the defaults as shipped, with only the context lowered so the test stays small
    argv = merge_flags(DEFAULT_BASE_ARGS, ["-c", "512"], table)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)  # no user config.ini
    cmd = [str(llama_server_bin), *argv, "-m", str(smollm2_path), "--host", "127.0.0.1",
           "--port", str(port), "--parallel", "1"]  # fmt: skip
    log = tmp_path / "llama-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code
            except httpx.TransportError:
                status = None
            if status == 200:
                break
            time.sleep(0.05)
        tail = log.read_text(errors="replace")[-2000:]
        assert status == 200, f"exit={proc.poll()} argv={cmd}\n{tail}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
