"""The OS-specific part of running a child, behind one small interface."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Protocol


class ChildControl(Protocol):
    """How to spawn, adopt, stop and clean up after one child on this OS."""

    def popen_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``subprocess.Popen`` (stdio, session/group, flags)."""
        ...

    def adopt(self, proc: subprocess.Popen[bytes]) -> None:
        """Called right after spawn (Windows: join the kill-on-close job)."""
        ...

    def soft_stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Ask the child's tree to exit (SIGTERM to the group / CTRL_BREAK_EVENT)."""
        ...

    def hard_kill(self, proc: subprocess.Popen[bytes]) -> None:
        """End the child's tree now (SIGKILL to the group / TerminateJobObject)."""
        ...

    def release(self, proc: subprocess.Popen[bytes]) -> None:
        """After the child was reaped: end stray descendants, free OS resources."""
        ...


def platform_control() -> ChildControl:
    """The :class:`ChildControl` for the OS we run on."""
    if sys.platform == "win32":
        from llamasc.process._windows import WindowsControl

        return WindowsControl()
    from llamasc.process._posix import PosixControl

    return PosixControl()
