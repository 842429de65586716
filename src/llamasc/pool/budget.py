"""What the devices have free (the default memory budget) and what a sidecar really holds.

- Host RAM through psutil; NVIDIA GPUs through ``nvidia-smi``; AMD GPUs through
  ``rocm-smi`` (``amd-smi`` is not read yet). A tool that is missing or fails contributes
  nothing; no device readable at all means no memory budget (the pool then counts sidecars
  only).
- The default budget is what each device reports free at start-up minus a margin (10% of
  it, at least 512 MiB), so the daemon does not plan on the last byte.
- A ready sidecar's real hold: its RSS (host) and, on NVIDIA, the per-process memory the driver
  reports (``nvidia-smi --query-compute-apps``).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

import psutil

log = logging.getLogger(__name__)

MIB = 1024**2
SMI_TIMEOUT = 5.0
MIN_MARGIN = 512 * MIB


def _margin(free: int) -> int:
    return max(MIN_MARGIN, free // 10)


def _run(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(
            argv, capture_output=True, timeout=SMI_TIMEOUT, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s failed: %s", argv[0], exc)
        return None
    if out.returncode != 0:
        return None
    return out.stdout.decode("utf-8", "replace")


def parse_nvidia_free(text: str) -> dict[str, int]:
    """``index, memory.free`` CSV (MiB, no units) -> ``{"cuda0": bytes}``."""
    free: dict[str, int] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            free[f"cuda{parts[0]}"] = int(parts[1]) * MIB
    return free


def parse_rocm_free(text: str) -> dict[str, int]:
    """``rocm-smi --showmeminfo vram --json`` -> ``{"rocm0": bytes}``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    free: dict[str, int] = {}
    for card, info in data.items() if isinstance(data, dict) else ():
        if not (isinstance(card, str) and card.startswith("card") and isinstance(info, dict)):
            continue
        try:
            total = int(info["VRAM Total Memory (B)"])
            used = int(info["VRAM Total Used Memory (B)"])
        except (KeyError, ValueError, TypeError):
            continue
        free[f"rocm{card[4:]}"] = total - used
    return free


def device_free() -> dict[str, int]:
    """What every readable device reports free now, in bytes."""
    free = {"host": int(psutil.virtual_memory().available)}
    nv = _run(["nvidia-smi", "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"])
    if nv:
        free.update(parse_nvidia_free(nv))
    rocm = _run(["rocm-smi", "--showmeminfo", "vram", "--json"])
    if rocm:
        free.update(parse_rocm_free(rocm))
    return free


def default_budget() -> dict[str, int]:
    """What the devices report free at start-up, minus a margin."""
    try:
        free = device_free()
    except Exception as exc:  # psutil cannot read this system's memory
        log.warning("cannot read free memory (%s): scheduling by count only", exc)
        return {}
    return {d: max(0, v - _margin(v)) for d, v in free.items()}


def measure(pid: int) -> dict[str, int]:
    """What process ``pid`` holds now: RSS on host, driver-reported memory per NVIDIA GPU."""
    held: dict[str, int] = {}
    try:
        held["host"] = int(psutil.Process(pid).memory_info().rss)
    except (psutil.Error, OSError):
        return {}
    if shutil.which("nvidia-smi") is not None:
        held.update(_nvidia_process(pid))
    return held


def _nvidia_process(pid: int) -> dict[str, int]:
    gpus = _run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"])
    query = "--query-compute-apps=pid,gpu_uuid,used_memory"
    apps = _run(["nvidia-smi", query, "--format=csv,noheader,nounits"])
    if not gpus or not apps:
        return {}
    index = {}
    for line in gpus.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2:
            index[parts[1]] = parts[0]
    held: dict[str, int] = {}
    for line in apps.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0] == str(pid) and parts[2].isdigit() and parts[1] in index:
            dev = f"cuda{index[parts[1]]}"
            held[dev] = held.get(dev, 0) + int(parts[2]) * MIB
    return held


__all__ = [
    "default_budget",
    "device_free",
    "measure",
    "parse_nvidia_free",
    "parse_rocm_free",
]
