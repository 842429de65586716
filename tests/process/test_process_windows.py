"""The Windows machinery, checked by what it would ask of the OS (it cannot run here)."""

from __future__ import annotations

import ctypes
import logging
import subprocess
from typing import Any

import pytest

from llamasc.process import _posix, _windows
from llamasc.process._windows import (
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JobObject,
    WindowsControl,
)


class FakeKernel32:
    """Records every call; ``fail`` names the calls that should fail (return 0)."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail = fail or set()
        self.limit_flags: int | None = None

    def _ret(self, name: str, ok: int, *args: Any) -> int:
        self.calls.append((name, args))
        return 0 if name in self.fail else ok

    def CreateJobObjectW(self, attributes: None, name: None) -> int | None:
        return self._ret("CreateJobObjectW", 0x1234, attributes, name) or None

    def SetInformationJobObject(self, job: int, info_class: int, info: Any, size: int) -> int:
        self.limit_flags = info.contents.BasicLimitInformation.LimitFlags
        return self._ret("SetInformationJobObject", 1, job, info_class, size)

    def AssignProcessToJobObject(self, job: int, process: int) -> int:
        return self._ret("AssignProcessToJobObject", 1, job, process)

    def TerminateJobObject(self, job: int, exit_code: int) -> int:
        return self._ret("TerminateJobObject", 1, job, exit_code)

    def CloseHandle(self, handle: int) -> int:
        return self._ret("CloseHandle", 1, handle)

    def last_error(self) -> int:
        return 5  # ERROR_ACCESS_DENIED

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class FakeProc:
    pid = 4242
    _handle = 0x99

    def __init__(self) -> None:
        self.killed = 0

    def kill(self) -> None:
        self.killed += 1


def test_popen_kwargs_for_windows() -> None:
    kw = _windows.popen_kwargs()
    assert kw["creationflags"] == 0x08000000 | 0x00000200
    assert kw["stdin"] is subprocess.DEVNULL
    assert kw["stdout"] is subprocess.PIPE
    assert kw["stderr"] is subprocess.STDOUT
    assert kw["close_fds"] is True
    assert "preexec_fn" not in kw
    assert "start_new_session" not in kw


def test_popen_kwargs_for_posix() -> None:
    kw = _posix.popen_kwargs()
    assert kw["start_new_session"] is True
    assert kw["stdin"] is subprocess.DEVNULL
    assert kw["stderr"] is subprocess.STDOUT
    assert "creationflags" not in kw


def test_job_object_layout_matches_win32() -> None:
    info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION
    basic = _windows.JOBOBJECT_BASIC_LIMIT_INFORMATION
    assert basic.LimitFlags.offset == 16
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert ctypes.sizeof(info) == 144  # sizeof() in a 64-bit Windows SDK build
        assert info.IoInfo.offset == 64
    else:
        assert ctypes.sizeof(info) == 112


def test_job_is_kill_on_close_and_owns_the_child() -> None:
    k = FakeKernel32()
    control = WindowsControl(kernel32=k)
    proc = FakeProc()
    control.adopt(proc)  # type: ignore[arg-type]
    assert k.calls[0] == ("CreateJobObjectW", (None, None))
    name, (job, info_class, size) = k.calls[1]
    assert name == "SetInformationJobObject"
    assert (job, info_class, size) == (
        0x1234,
        9,
        ctypes.sizeof(JOBOBJECT_EXTENDED_LIMIT_INFORMATION),
    )
    assert k.limit_flags == 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert k.calls[2] == ("AssignProcessToJobObject", (0x1234, 0x99))

    control.hard_kill(proc)  # type: ignore[arg-type]
    assert k.calls[3] == ("TerminateJobObject", (0x1234, 1))
    assert proc.killed == 1

    control.release(proc)  # type: ignore[arg-type]
    control.release(proc)  # type: ignore[arg-type]
    assert k.names().count("CloseHandle") == 1
    assert k.calls[-1] == ("CloseHandle", (0x1234,))


def test_soft_stop_sends_ctrl_break_to_the_group(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(_windows.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    WindowsControl(kernel32=FakeKernel32()).soft_stop(FakeProc())  # type: ignore[arg-type]
    assert sent == [(4242, 1)]  # CTRL_BREAK_EVENT, to the group the child leads


def test_soft_stop_failure_is_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int, sig: int) -> None:
        raise OSError("no console")

    monkeypatch.setattr(_windows.os, "kill", refuse)
    WindowsControl(kernel32=FakeKernel32()).soft_stop(FakeProc())  # type: ignore[arg-type]


@pytest.mark.parametrize("failing", ["CreateJobObjectW", "SetInformationJobObject"])
def test_job_creation_failures_raise_and_leak_no_handle(failing: str) -> None:
    k = FakeKernel32(fail={failing})
    with pytest.raises(OSError, match=f"{failing} failed \\(Windows error 5\\)"):
        JobObject(k)
    opened = 0 if failing == "CreateJobObjectW" else 1
    assert k.names().count("CloseHandle") == opened


def test_child_outside_a_job_still_runs_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    k = FakeKernel32(fail={"AssignProcessToJobObject"})
    control = WindowsControl(kernel32=k)
    proc = FakeProc()
    with caplog.at_level(logging.WARNING, logger="llamasc.process"):
        control.adopt(proc)  # type: ignore[arg-type]
    assert "not in a kill-on-close job" in caplog.text
    assert control.job is None
    assert k.names()[-1] == "CloseHandle"  # the unused job was closed
    control.hard_kill(proc)  # type: ignore[arg-type]
    assert proc.killed == 1  # TerminateProcess still ends it
    assert "TerminateJobObject" not in k.names()
