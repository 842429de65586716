"""Helpers for the sweep tests: a llama-server stand-in that refuses MTP, process checks."""

from __future__ import annotations

import json
import stat
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

FAKE_SERVER = Path(__file__).resolve().parent.parent / "fakes" / "fake_llama_server.py"
TINY_PROMPTS = Path(__file__).resolve().parent / "data" / "tiny-prompts.yaml"
MTP_ERROR = "llama_init_from_model: context type MTP requested but model doesn't contain MTP layers"


def fake_server_wrapper(directory: Path, env: Mapping[str, str] | None = None) -> Path:
    """A ``llama-server`` that behaves like the fake, except that ``draft-mtp`` fails to load
    the way the real server does on a model without MTP layers (log lines, exit 1)."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "llama-server"
    exports = "".join(f"export {k}='{v}'\n" for k, v in (env or {}).items())
    exe.write_text(
        "#!/bin/sh\n"
        f"{exports}"
        'for a in "$@"; do\n'
        '  if [ "$a" = "draft-mtp" ]; then\n'
        "    echo 'srv    load_model: loading model' >&2\n"
        f'    echo "{MTP_ERROR}" >&2\n'
        "    echo 'srv    load_model: failed to create MTP context' >&2\n"
        "    exit 1\n"
        "  fi\n"
        "done\n"
        f'exec "{sys.executable}" "{FAKE_SERVER}" "$@"\n'
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def processes_with(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line mentions ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_no_processes(marker: str, timeout: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ok_records(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(path) if r.get("status") == "ok"]
