"""Children of a previous daemon run: recorded in a state file, reaped at the next start.

On Linux a child dies with the daemon (parent-death signal) and on Windows with its Job
Object, but a daemon can still leave children behind (another POSIX system, a child that
was between fork and prctl, a wrapper that escaped its group). So the daemon records each
child in a JSON state file, rewritten atomically on every change, and at start-up kills
the children a previous run left there.

A pid alone proves nothing: pids are reused. A recorded child is killed only if a process
with that pid exists, was created at the recorded time, and runs the recorded arguments;
anything else is an unrelated process and is left alone.

"Created at the recorded time" is compared as time since boot on Linux: psutil's wall-clock
creation time is the kernel's boot time plus the process's start ticks, and the boot time the
kernel reports moves (in whole seconds) whenever the wall clock is stepped, as NTP does after
a suspend or a VM snapshot restore. Compared as wall-clock time, a real leftover would then
look like another process and be missed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from llamasc.process.server import LlamaServer

log = logging.getLogger(__name__)

STATE_VERSION = 1
CREATE_TIME_TOLERANCE = (
    0.01  # psutil derives it from clock ticks: equal when it is the same process
)


def fingerprint(args: Sequence[str]) -> str:
    """sha256 of the arguments (not the program: wrappers and interpreters change argv[0])."""
    return hashlib.sha256("\0".join(args).encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class ChildRecord:
    """What identifies one child beyond doubt: pid + creation time + its arguments."""

    pid: int
    create_time: float
    port: int
    key: str
    exe: str
    args_sha256: str
    n_args: int
    # the system's boot time when the record was made (Linux): create_time - boot_time is
    # the creation time since boot, which no clock step changes; None in old state files
    boot_time: float | None = None

    @classmethod
    def of(
        cls, pid: int, create_time: float, port: int, key: str, argv: Sequence[str]
    ) -> ChildRecord:
        return cls(
            pid,
            create_time,
            port,
            key,
            argv[0],
            fingerprint(argv[1:]),
            len(argv) - 1,
            _boot_time(),
        )

    @classmethod
    def for_server(cls, server: LlamaServer, key: str) -> ChildRecord:
        return cls.of(server.pid, server.create_time, server.port, key, server.argv)

    @classmethod
    def from_json(cls, obj: Any) -> ChildRecord:
        return cls(
            pid=int(obj["pid"]),
            create_time=float(obj["create_time"]),
            port=int(obj["port"]),
            key=str(obj["key"]),
            exe=str(obj["exe"]),
            args_sha256=str(obj["args_sha256"]),
            n_args=int(obj["n_args"]),
            boot_time=None if obj.get("boot_time") is None else float(obj["boot_time"]),
        )

    def live_process(self) -> psutil.Process | None:
        """The process this record names, if it still runs; None if it is gone or not it."""
        try:
            proc = psutil.Process(self.pid)
            if not _created_at(proc, self.create_time, self.boot_time):
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            cmdline = proc.cmdline()
        except psutil.Error:
            return None
        if self.n_args <= 0 or len(cmdline) <= self.n_args:
            return None
        if fingerprint(cmdline[-self.n_args :]) != self.args_sha256:
            return None
        return proc


def _boot_time() -> float | None:
    """The boot time creation times are derived from, where they are (Linux); else None.

    (On Windows psutil derives the boot time from the uptime, so it jitters, while creation
    times are wall-clock stamps of their own: there the wall-clock comparison is the right one.)
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        return float(psutil.boot_time())
    except (psutil.Error, OSError, RuntimeError):
        return None


def _created_at(proc: psutil.Process, create_time: float, boot_time: float | None) -> bool:
    """Was ``proc`` created at ``create_time`` (read when the boot time was ``boot_time``)?"""
    now_boot = _boot_time()
    if boot_time is not None and now_boot is not None:
        since_boot = proc.create_time() - now_boot
        return abs(since_boot - (create_time - boot_time)) <= CREATE_TIME_TOLERANCE
    return abs(proc.create_time() - create_time) <= CREATE_TIME_TOLERANCE


def owner_identity() -> dict[str, Any]:
    """Who we are, beyond doubt: host, pid, creation time (and the boot time it is read at).

    Written beside what we start (the state file here, ``launch.json`` on a bench host), so
    a later run can tell the leftovers of a dead run from those of a live sibling."""
    me = psutil.Process()
    return {
        "host": socket.gethostname(),
        "pid": me.pid,
        "create_time": me.create_time(),
        "boot_time": _boot_time(),
    }


class StateFile:
    """This daemon's children, mirrored to ``path`` as JSON on every change."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._children: dict[int, ChildRecord] = {}
        self._lock = threading.Lock()
        self._daemon = owner_identity()

    def add(self, server: LlamaServer, key: str) -> ChildRecord:
        """Record a started child under its pool ``key``."""
        record = ChildRecord.for_server(server, key)
        self.add_record(record)
        return record

    def add_record(self, record: ChildRecord) -> None:
        with self._lock:
            self._children[record.pid] = record
            self._write()

    def remove(self, pid: int) -> None:
        """Forget a child (after it was stopped and reaped); unknown pids are ignored."""
        with self._lock:
            if self._children.pop(pid, None) is not None:
                self._write()

    def records(self) -> list[ChildRecord]:
        with self._lock:
            return list(self._children.values())

    def clear(self) -> None:
        with self._lock:
            self._children.clear()
            self._write()

    def _write(self) -> None:
        data = {
            "version": STATE_VERSION,
            "daemon": self._daemon,
            "children": [asdict(r) for r in self._children.values()],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable state file %s: %s", path, exc)
        return None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        log.warning("ignoring state file %s: unknown format", path)
        return None
    return data


def owner_alive(owner: Any) -> bool:
    """Is the process of :func:`owner_identity` ``owner`` still running (us, or another)?

    One of another machine (or none recorded) cannot be checked: it counts as gone."""
    try:
        if owner.get("host", socket.gethostname()) != socket.gethostname():
            return False
        proc = psutil.Process(int(owner["pid"]))
        boot = owner.get("boot_time")
        return _created_at(proc, float(owner["create_time"]), None if boot is None else float(boot))
    except (psutil.Error, AttributeError, KeyError, TypeError, ValueError):
        return False


def _signal_tree(proc: psutil.Process, sig: int) -> None:
    """Signal the child's process group if it leads one (it does, as we started it)."""
    with contextlib.suppress(psutil.Error, OSError):
        if sys.platform != "win32" and os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def reap_leftovers(path: Path, *, grace: float = 2.0) -> list[int]:
    """Kill the children a previous daemon run recorded in ``path``; their pids.

    Only processes that match their record (pid, creation time, arguments) are touched.
    Nothing is done while the daemon that wrote the file still runs. The file is removed
    afterwards: what it described is gone.
    """
    path = Path(path)
    data = _load(path)
    if data is None:
        return []
    if owner_alive(data.get("daemon")):
        log.warning("state file %s belongs to a running daemon; not reaping its children", path)
        return []
    victims: list[psutil.Process] = []
    for obj in data.get("children", []):
        try:
            record = ChildRecord.from_json(obj)
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed entry in %s: %r", path, obj)
            continue
        proc = record.live_process()
        if proc is not None:
            log.warning(
                "killing pid %d (port %d, key %s) left over from a previous run",
                record.pid,
                record.port,
                record.key[:12],
            )
            victims.append(proc)
    for proc in victims:
        _signal_tree(proc, signal.SIGTERM)
    _gone, alive = psutil.wait_procs(victims, timeout=grace)
    for proc in alive:
        _signal_tree(proc, getattr(signal, "SIGKILL", signal.SIGTERM))
    psutil.wait_procs(alive, timeout=5.0)
    with contextlib.suppress(OSError):
        path.unlink()
    return [p.pid for p in victims]
