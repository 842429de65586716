"""Windows: a Job Object per child, so the child's whole tree dies with the daemon.

Windows has no parent-death signal. A Job Object created with
``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`` kills every process in it when its last handle
closes, and the kernel closes the daemon's handles however the daemon ends (Task Manager,
``taskkill /f``, a crash). The handle is not inheritable, so no child keeps its own job
alive. The child is assigned right after ``CreateProcess``; llama-server starts no
processes of its own that early, so nothing escapes the job in that window.

Creation flags: ``CREATE_NO_WINDOW`` (no console window pops up per model) and
``CREATE_NEW_PROCESS_GROUP`` (a Ctrl-C in the daemon's console is not delivered to the
children; the daemon stops them itself). stdin is NUL and the merged stdout/stderr pipe is
drained continuously: llama-sidecar saw children exit after one request until all of that
was in place.

Stopping: ``CTRL_BREAK_EVENT`` to the child's process group is attempted first; a child
without a console (``CREATE_NO_WINDOW``) may never see it, so the grace period can run
out, and then ``TerminateJobObject`` ends the whole tree.

No pywin32: kernel32 is called through ctypes, behind a small interface that tests
replace with a recording fake (this machinery cannot be run on Linux).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
from typing import Any, Protocol

log = logging.getLogger(__name__)

CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9  # JobObjectExtendedLimitInformation
CTRL_BREAK_EVENT = 1


class IO_COUNTERS(ctypes.Structure):
    _fields_ = [
        ("ReadOperationCount", ctypes.c_uint64),
        ("WriteOperationCount", ctypes.c_uint64),
        ("OtherOperationCount", ctypes.c_uint64),
        ("ReadTransferCount", ctypes.c_uint64),
        ("WriteTransferCount", ctypes.c_uint64),
        ("OtherTransferCount", ctypes.c_uint64),
    ]


class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION),
        ("IoInfo", IO_COUNTERS),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class Kernel32(Protocol):
    """The five kernel32 calls we make (Win32 names and argument order), plus the last error."""

    def CreateJobObjectW(self, attributes: None, name: None) -> int | None: ...

    def SetInformationJobObject(self, job: int, info_class: int, info: Any, size: int) -> int: ...

    def AssignProcessToJobObject(self, job: int, process: int) -> int: ...

    def TerminateJobObject(self, job: int, exit_code: int) -> int: ...

    def CloseHandle(self, handle: int) -> int: ...

    def last_error(self) -> int: ...


class _RealKernel32:
    """kernel32 through ctypes, with handle-sized argument types (HANDLE is a pointer)."""

    def __init__(self) -> None:
        # WinDLL and get_last_error exist only on Windows builds of ctypes.
        windll: Any = getattr(ctypes, "WinDLL")  # noqa: B009
        k = windll("kernel32", use_last_error=True)
        handle, dword, bool_ = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        k.CreateJobObjectW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p]
        k.CreateJobObjectW.restype = handle
        k.SetInformationJobObject.argtypes = [handle, ctypes.c_int, ctypes.c_void_p, dword]
        k.SetInformationJobObject.restype = bool_
        k.AssignProcessToJobObject.argtypes = [handle, handle]
        k.AssignProcessToJobObject.restype = bool_
        k.TerminateJobObject.argtypes = [handle, ctypes.c_uint]
        k.TerminateJobObject.restype = bool_
        k.CloseHandle.argtypes = [handle]
        k.CloseHandle.restype = bool_
        self._k = k

    def __getattr__(self, name: str) -> Any:
        return getattr(self._k, name)

    def last_error(self) -> int:
        get_last_error: Any = getattr(ctypes, "get_last_error")  # noqa: B009
        return int(get_last_error())


def load_kernel32() -> Kernel32:
    k: Kernel32 = _RealKernel32()
    return k


class JobObject:
    """A kill-on-close Job Object; ``close()`` (or the daemon's death) ends its processes."""

    def __init__(self, kernel32: Kernel32 | None = None) -> None:
        self._k = kernel32 if kernel32 is not None else load_kernel32()
        handle = self._k.CreateJobObjectW(None, None)
        if not handle:
            raise OSError(f"CreateJobObjectW failed (Windows error {self._k.last_error()})")
        self.handle: int | None = int(handle)
        info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        ok = self._k.SetInformationJobObject(
            self.handle,
            JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
            ctypes.pointer(info),
            ctypes.sizeof(info),
        )
        if not ok:
            err = self._k.last_error()
            self.close()
            raise OSError(f"SetInformationJobObject failed (Windows error {err})")

    def assign(self, process_handle: int) -> None:
        if self.handle is None or not self._k.AssignProcessToJobObject(self.handle, process_handle):
            raise OSError(f"AssignProcessToJobObject failed (Windows error {self._k.last_error()})")

    def terminate(self, exit_code: int = 1) -> None:
        if self.handle is not None and not self._k.TerminateJobObject(self.handle, exit_code):
            log.debug("TerminateJobObject failed (Windows error %d)", self._k.last_error())

    def close(self) -> None:
        """Close the handle: with KILL_ON_JOB_CLOSE this ends whatever is still in the job."""
        if self.handle is not None:
            handle, self.handle = self.handle, None
            self._k.CloseHandle(handle)


def popen_kwargs() -> dict[str, Any]:
    """What ``subprocess.Popen`` needs for a llama-server child on Windows."""
    return {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "close_fds": True,
        "creationflags": CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP,
    }


class WindowsControl:
    """Start/stop policy for one child on Windows (see the module docstring)."""

    def __init__(self, kernel32: Kernel32 | None = None) -> None:
        self._kernel32 = kernel32
        self.job: JobObject | None = None

    def popen_kwargs(self) -> dict[str, Any]:
        return popen_kwargs()

    def adopt(self, proc: subprocess.Popen[bytes]) -> None:
        """Put the fresh child in its own kill-on-close job."""
        job: JobObject | None = None
        try:
            job = JobObject(self._kernel32)
            job.assign(int(getattr(proc, "_handle")))  # noqa: B009 (Windows-only attribute)
        except OSError as exc:
            # Without the job the child still runs and stops normally; it could only
            # outlive a daemon that is killed outright. Say so rather than refuse to serve.
            log.warning(
                "pid %d is not in a kill-on-close job (%s); it may outlive us", proc.pid, exc
            )
            if job is not None:
                job.close()  # the child is not in it, so closing it kills nothing
            return
        self.job = job

    def soft_stop(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            os.kill(proc.pid, getattr(signal, "CTRL_BREAK_EVENT", CTRL_BREAK_EVENT))
        except OSError as exc:
            log.debug("CTRL_BREAK_EVENT to pid %d failed: %s", proc.pid, exc)

    def hard_kill(self, proc: subprocess.Popen[bytes]) -> None:
        if self.job is not None:
            self.job.terminate(1)
        try:
            proc.kill()  # TerminateProcess: also covers a child that is not in the job
        except OSError as exc:
            log.debug("TerminateProcess on pid %d failed: %s", proc.pid, exc)

    def release(self, proc: subprocess.Popen[bytes]) -> None:
        if self.job is not None:
            self.job.close()
            self.job = None
