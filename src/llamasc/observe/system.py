"""Host and GPU readings for the gauges: what can be read is shown, what cannot is absent.

Host memory and each sidecar's resident memory come from psutil. NVIDIA GPUs are read with
``nvidia-smi`` (memory, utilisation, per-process memory) when it is on PATH; AMD GPUs with
``rocm-smi --json``. A reading that fails is logged once at DEBUG and left out, never shown as
zero. GPU readings are cached for a few seconds, so a busy scraper costs little.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

log = logging.getLogger(__name__)

_GPU_TTL = 5.0
_SMI_TIMEOUT = 3.0


@dataclass
class GpuReading:
    memory: dict[tuple[str, str], float] = field(default_factory=dict)  # (device, kind) -> bytes
    utilization: dict[str, float] = field(default_factory=dict)  # device -> 0..1
    by_pid: dict[int, dict[str, float]] = field(default_factory=dict)  # pid -> device -> bytes


def host_memory() -> dict[str, float]:
    vm = psutil.virtual_memory()
    return {
        "total": float(vm.total),
        "used": float(vm.total - vm.available),
        "free": float(vm.available),
    }


def process_rss(pids: Iterable[int]) -> dict[int, float]:
    """Resident memory of each pid (with its children: llama-server may fork helpers)."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            out[pid] = float(psutil.Process(pid).memory_info().rss)
        except (psutil.Error, OSError):
            continue
    return out


def _run(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_SMI_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s failed: %s", argv[0], exc)
        return None
    if done.returncode != 0:
        log.debug("%s exited %d: %s", argv[0], done.returncode, done.stderr.strip()[:200])
        return None
    return done.stdout


def read_nvidia(smi: str) -> GpuReading | None:
    out = _run(
        [
            smi,
            "--query-gpu=index,memory.used,memory.free,memory.total,utilization.gpu",
            "--format=csv,noheader,nounits",
        ]
    )
    if out is None:
        return None
    reading = GpuReading()
    uuid_to_dev: dict[str, str] = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue
        dev = f"cuda{parts[0]}"
        for kind, text in zip(("used", "free", "total"), parts[1:4], strict=True):
            try:
                reading.memory[(dev, kind)] = float(text) * 1024 * 1024
            except ValueError:
                continue
        with contextlib.suppress(ValueError):
            reading.utilization[dev] = float(parts[4]) / 100.0
    uuids = _run([smi, "--query-gpu=index,uuid", "--format=csv,noheader"])
    for line in (uuids or "").splitlines():
        idx, _, uuid = (p.strip() for p in line.partition(","))
        uuid_to_dev[uuid] = f"cuda{idx}"
    apps = _run(
        [smi, "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits"]
    )
    for line in (apps or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        try:
            pid, mib = int(parts[0]), float(parts[2])
        except ValueError:
            continue
        dev = uuid_to_dev.get(parts[1], "cuda")
        reading.by_pid.setdefault(pid, {})[dev] = mib * 1024 * 1024
    return reading


def read_rocm(smi: str) -> GpuReading | None:
    out = _run([smi, "--showmeminfo", "vram", "--showuse", "--json"])
    if out is None:
        return None
    try:
        data = json.loads(out)
    except ValueError:
        return None
    reading = GpuReading()
    for card, values in data.items() if isinstance(data, dict) else ():
        if not isinstance(values, dict):
            continue
        dev = f"rocm{card.removeprefix('card')}"
        total = values.get("VRAM Total Memory (B)")
        used = values.get("VRAM Total Used Memory (B)")
        try:
            if total is not None and used is not None:
                reading.memory[(dev, "total")] = float(total)
                reading.memory[(dev, "used")] = float(used)
                reading.memory[(dev, "free")] = float(total) - float(used)
            use = values.get("GPU use (%)")
            if use is not None:
                reading.utilization[dev] = float(use) / 100.0
        except ValueError:
            continue
    return reading


class GpuReader:
    """The GPUs' state, cached for a few seconds (safe to call from several threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._last: GpuReading | None = None
        self._nvidia = shutil.which("nvidia-smi")
        self._rocm = shutil.which("rocm-smi")

    @property
    def available(self) -> bool:
        return bool(self._nvidia or self._rocm)

    def read(self) -> GpuReading | None:
        if not self.available:
            return None
        with self._lock:
            if time.monotonic() - self._at < _GPU_TTL:
                return self._last
            reading = None
            if self._nvidia:
                reading = read_nvidia(self._nvidia)
            if reading is None and self._rocm:
                reading = read_rocm(self._rocm)
            self._last = reading
            self._at = time.monotonic()
            return reading


__all__ = ["GpuReader", "GpuReading", "host_memory", "process_rss", "read_nvidia", "read_rocm"]
