"""One writer per results file: an advisory lock held for the whole run of a configuration.

The lock is on a companion file, ``<records>.lock``, not on the records themselves, because
``--fresh`` renames the records file aside and a lock on its inode would go with it. The
holder writes its pid into the lock file once it has the lock, so a second run of the same
configuration can say who is in the way. The kernel drops the lock when the holder exits,
however it exits, so a crashed run never leaves a stale lock behind (a stale pid in the file
is harmless: it is only read while someone holds the lock).

POSIX: ``fcntl.flock`` (whole file, exclusive, non-blocking). Windows: ``msvcrt.locking`` on
one byte far past the pid, so that the pid itself stays readable by the second run.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from llamasc.errors import DataError

# Windows locks byte ranges and refuses reads of a locked range: lock one byte out of the way
_WIN_LOCK_OFFSET = 1 << 20


class ResultsLockedError(DataError):
    """Another process holds the lock of this results file (a concurrent run of the same
    configuration)."""


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", errors="replace").strip()
    return f"pid {text}" if text.isdigit() else "another process"


@contextlib.contextmanager
def results_lock(records: Path, what: str = "") -> Iterator[Path]:
    """Hold the lock of ``records`` (a results file) for the ``with`` block.

    Raises ``ResultsLockedError`` at once, naming the holder's pid, when another process
    has it: two writers of one file would interleave their answers."""
    lock_path = records.with_name(records.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            raise ResultsLockedError(
                f"{records} is in use by {_holder(fd)}{what}; wait for that run to finish "
                "or stop it, then run again"
            )
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield lock_path
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


__all__ = ["ResultsLockedError", "results_lock"]
