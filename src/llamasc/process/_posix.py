"""POSIX: each child leads its own session, and on Linux dies with its parent.

``start_new_session=True`` makes the child a process-group leader (pgid == pid), so a
stop reaches anything it forked (wrapper scripts, helpers) with one ``killpg``; it also
keeps a terminal's Ctrl-C away from the children: the daemon stops them itself.

On Linux the child also gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in ``preexec_fn``, so a
daemon killed with SIGKILL (or the OOM killer) leaves no llama-server behind. The kernel
sends that signal when the *thread* that forked the child exits, not the process: spawn
from a thread that lives as long as the daemon, i.e. the event loop thread (never from a
short-lived worker thread such as ``asyncio.to_thread``). ``preexec_fn`` runs between fork
and exec, where only async-signal-safe work is allowed: ``prctl`` is resolved in the
parent beforehand and the child only calls it and ``getppid``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
_prctl: Any = None


def _load_prctl() -> Any:
    global _prctl
    if _prctl is None:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.prctl
        fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        fn.restype = ctypes.c_int
        _prctl = fn
    return _prctl


def pdeathsig_preexec(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to SIGKILL the child when its parent goes away."""
    prctl = _load_prctl()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sigkill)

    return preexec


def popen_kwargs() -> dict[str, Any]:
    """What ``subprocess.Popen`` needs for a llama-server child on this POSIX system."""
    kwargs: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "close_fds": True,
        "start_new_session": True,
    }
    if sys.platform.startswith("linux"):
        kwargs["preexec_fn"] = pdeathsig_preexec(os.getpid())
    return kwargs


def signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group led by ``pid``; False if nobody is left in it.

    Safe after the leader was reaped: Linux never hands out a pid that is still in use as
    a process-group id, so the group is either ours (stray descendants) or empty.
    """
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as exc:  # a descendant changed identity; nothing we may do
        log.debug("cannot signal process group %d: %s", pid, exc)
        return False
    return True


class PosixControl:
    """Start/stop policy for one child on POSIX (see the module docstring)."""

    def popen_kwargs(self) -> dict[str, Any]:
        return popen_kwargs()

    def adopt(self, proc: subprocess.Popen[bytes]) -> None:
        """Nothing to do after spawn: the session and the death signal are already set."""

    def soft_stop(self, proc: subprocess.Popen[bytes]) -> None:
        signal_group(proc.pid, signal.SIGTERM)

    def hard_kill(self, proc: subprocess.Popen[bytes]) -> None:
        signal_group(proc.pid, signal.SIGKILL)

    def release(self, proc: subprocess.Popen[bytes]) -> None:
        # A child that exited may have left descendants in its group: they go too.
        signal_group(proc.pid, signal.SIGKILL)
