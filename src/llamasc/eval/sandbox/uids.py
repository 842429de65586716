"""A uid of its own for each sandbox started as root, leased from a range with flock.

RLIMIT_NPROC counts the processes of a real uid. Sandboxes that all ran as uid 65534 shared
one count, so one fork bomb starved every other sandbox on the host (and any other program of
that uid). Each sandbox now runs as a uid nobody else uses while it runs: a lease is an
exclusive ``flock`` on ``<tmp>/llamasc-sandbox-uids/<uid>.lock``, held for the sandbox's life
and dropped by the kernel however its holder ends, so concurrent runs in other processes never
get the same uid. The PID namespace guarantees that nothing of a sandbox outlives it, so a
released uid owns no process when it is leased again.

The default range (``0x70000000`` + 4096) is above the ranges systemd reserves for
containers (up to ``0x6FFFFFFF``) and below its foreign range (``0x7FFE0000``).
"""

from __future__ import annotations

import contextlib
import os
import random
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from llamasc.errors import DataError

UID_BASE = 0x70000000
UID_COUNT = 4096


def _lease_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "llamasc-sandbox-uids"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    # a world-writable /tmp: refuse a directory someone else made (or a symlink)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise DataError(f"{path} is not a private directory of this user; remove it")
    return path


@contextlib.contextmanager
def lease_uid(base: int = UID_BASE, count: int = UID_COUNT) -> Iterator[int]:
    """A uid from ``base .. base+count-1`` that no other sandbox holds, for the block."""
    import fcntl

    directory = _lease_dir()
    start = random.randrange(count)  # spreads leases, not a secret
    for i in range(count):
        uid = base + (start + i) % count
        fd = os.open(directory / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            os.close(fd)  # drops the lock
        return
    raise DataError(f"all {count} sandbox uids from {base} are in use")


__all__ = ["UID_BASE", "UID_COUNT", "lease_uid"]
