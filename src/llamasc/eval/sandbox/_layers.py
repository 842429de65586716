"""The lockdown layers the sandbox's child applies to itself (stdlib only; no llamasc import).

Each function applies one layer when the host allows it and appends its name to ``layers``.
Linux only except the rlimits and the audit hook. See ``_child.py`` for the order and
``llamasc.eval.sandbox`` for which layer stops what.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Iterable
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Landlock access rights (uapi/linux/landlock.h)
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1, 2, 4, 8
LL_TRUNCATE, LL_IOCTL_DEV = 1 << 14, 1 << 15
LL_FILE_ONLY = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV
# system files any program may read: the dynamic loader's cache, shared libraries, time zones
SYSTEM_READ = (
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/etc/ld.so.cache",
    "/usr/share/zoneinfo",
    "/etc/localtime",
)


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _errno() -> str:
    return os.strerror(ctypes.get_errno())


def set_rlimits(cfg: dict[str, Any], layers: list[str]) -> None:
    try:
        import resource
    except ImportError:  # Windows
        return
    limits = {
        "RLIMIT_CORE": 0,
        "RLIMIT_CPU": int(cfg["cpu_seconds"]),
        "RLIMIT_AS": int(cfg["memory_bytes"]),
        "RLIMIT_FSIZE": int(cfg["fsize_bytes"]),
        "RLIMIT_NOFILE": int(cfg["nofile"]),
    }
    for name, value in limits.items():
        which = getattr(resource, name, None)
        if which is None:
            continue
        # CPU: SIGXCPU at the soft limit is ignored by a PID-namespace init, SIGKILL at hard is not
        hard = value + 1 if name == "RLIMIT_CPU" else value
        try:
            resource.setrlimit(which, (value, hard))
            layers.append(name.lower())
        except (ValueError, OSError):
            pass


def set_nproc(n: int, layers: list[str]) -> None:
    """Counted per real uid (per user namespace since Linux 5.14): the caller makes that uid
    or namespace this sandbox's own, so this is a limit for this sandbox alone."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
        layers.append("rlimit_nproc")
    except (ImportError, ValueError, OSError, AttributeError):
        pass


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _private_mounts(libc: Any) -> bool:
    """Nothing we mount may reach the host's mount table."""
    return bool(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0)


def enter_namespaces(layers: list[str], isolate: bool = True) -> bool:
    """New net + mount + PID namespaces (in a new user namespace when not root); returns
    whether a PID namespace was made (then the caller must fork: the child is its init).

    ``isolate=False`` (to test the other layers alone) makes only the mount namespace, and
    only for root, who needs it to reach a Python under a private home (``expose``)."""
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    if not isolate:
        if uid == 0 and libc.unshare(CLONE_NEWNS) == 0 and _private_mounts(libc):
            layers.append("mountns")
        return False
    base = CLONE_NEWNET | CLONE_NEWNS
    if uid != 0:
        base |= CLONE_NEWUSER
    for flags in (base | CLONE_NEWPID, base, base & ~CLONE_NEWNS):
        if libc.unshare(flags) == 0:
            break
    else:
        return False
    if flags & CLONE_NEWUSER:
        layers.append("userns")
        # without a mapping the kernel refuses to create files (EOVERFLOW)
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError:
            pass
    layers.append("netns")
    if flags & CLONE_NEWNS and _private_mounts(libc):
        layers.append("mountns")
    if flags & CLONE_NEWPID:
        layers.append("pidns")
        return True
    return False


def private_proc(layers: list[str]) -> None:
    """As the PID namespace's init, in the mount namespace: a /proc of this namespace only, so
    no other process of the host (its command line, its environment) is visible at all."""
    if "mountns" not in layers or "pidns" not in layers:
        return
    libc = _libc()
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if libc.mount(b"proc", b"/proc", b"proc", flags, None) == 0:
        layers.append("private-proc")


def _blocked_at(path: str) -> str | None:
    """The first directory on the way to ``path`` that others may not search, if any."""
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        prefix = os.sep.join(parts[:i])
        try:
            mode = os.stat(prefix).st_mode
        except OSError:
            return None
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return prefix
    return None


def expose(paths: Iterable[str], layers: list[str]) -> None:
    """Make ``paths`` reachable by an unprivileged uid without CAP_DAC_READ_SEARCH.

    A Python under a mode-700 home (``~/.pyenv/...`` of root) sits behind a directory only root
    may search. In our mount namespace we lay an empty tmpfs (mode 755) over that directory
    and bind the needed trees back into it: the program reaches its interpreter and sees
    nothing else of the hidden home. Root only (needs CAP_SYS_ADMIN in the initial userns)."""
    if "mountns" not in layers:
        return
    libc = _libc()
    hidden: dict[str, list[str]] = {}
    unique = sorted(set(paths), key=len)
    unique = [p for p in unique if not any(p.startswith(q + os.sep) for q in unique if q != p)]
    for path in unique:
        top = _blocked_at(path)
        if top is not None:
            hidden.setdefault(top, []).append(path)
    for top, inner in sorted(hidden.items()):
        fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in inner}
        try:
            if libc.mount(b"tmpfs", top.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755"):
                raise OSError(f"sandbox: cannot cover {top}: {_errno()}")
            for path, fd in fds.items():
                os.makedirs(path, mode=0o755, exist_ok=True)
                source = f"/proc/self/fd/{fd}".encode()
                if libc.mount(source, path.encode(), None, MS_BIND | MS_REC, None):
                    raise OSError(f"sandbox: cannot bind {path}: {_errno()}")
        finally:
            for fd in fds.values():
                os.close(fd)
        layers.append(f"exposed:{top}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities(layers: list[str]) -> None:
    """No capability at all, in the bounding set too (nothing regained by exec)."""
    libc = _libc()
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    data = (_CapData * 2)(_CapData(0, 0, 0), _CapData(0, 0, 0))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(f"capset failed: {_errno()}")
    layers.append("no-capabilities")


def drop_root(uid: int, layers: list[str]) -> None:
    """uid 0 ignores RLIMIT_NPROC and owns the host: become ``uid`` (this sandbox's own, so
    its process count is its own) with no capabilities, not even CAP_DAC_READ_SEARCH."""
    libc = _libc()
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # drops every capability: no PR_SET_KEEPCAPS
    layers.append(f"uid-{uid}")


def no_new_privs() -> None:
    _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def not_dumpable() -> None:
    """No ptrace and no /proc/PID/mem of this process by anything of the same uid."""
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def read_paths(workdir: str) -> list[str]:
    """What the program may read: the interpreter's prefix and standard library, the shared
    objects already mapped (and the system library directories), its own directory."""
    import sysconfig

    wanted = [sys.base_prefix, sys.base_exec_prefix]
    for key in ("stdlib", "platstdlib"):
        wanted.append(sysconfig.get_paths().get(key, ""))
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                fields = line.split(None, 5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    wanted.append(os.path.dirname(fields[5].strip()))
    except OSError:
        pass
    wanted.extend(SYSTEM_READ)
    seen: list[str] = []
    for path in wanted:
        if path and os.path.exists(path):
            real = os.path.realpath(path)
            if real not in seen and real != "/":
                seen.append(real)
    return [p for p in seen if p != os.path.realpath(workdir)]


def landlock(workdir: str, readable: list[str], layers: list[str], tag: str = "") -> bool:
    """Read only ``readable``, write only beneath ``workdir``; no TCP; no signals out.

    Applying it again makes a nested domain: a process in it can neither ptrace nor signal
    processes of the outer one. Returns whether it applied."""
    libc = _libc()
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return False
    fs_bits = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}.get(abi, 16)
    handled_fs = (1 << fs_bits) - 1
    read_only = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR
    attr = (ctypes.c_uint64 * 3)(handled_fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return False

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    rules = [(p, read_only) for p in readable]
    rules += [("/dev/null", LL_READ_FILE | LL_WRITE_FILE), ("/dev/urandom", LL_READ_FILE)]
    rules.append((workdir, handled_fs))
    try:
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            allowed = access if stat.S_ISDIR(os.fstat(fd).st_mode) else access & LL_FILE_ONLY
            rule = PathBeneath(allowed & handled_fs, fd)
            rc = libc.syscall(445, ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0))
            os.close(fd)
            if rc != 0:
                raise OSError(f"landlock_add_rule {path}: {_errno()}")
        if libc.syscall(446, ruleset, ctypes.c_uint32(0)) != 0:
            raise OSError(f"landlock_restrict_self: {_errno()}")
    finally:
        os.close(ruleset)
    layers.append(f"landlock-v{abi}{tag}")
    return True


_ALWAYS_DENIED = (
    "socket.",
    "ctypes.",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.startfile",
    "subprocess.Popen",
    "pty.spawn",
    "winreg.",
)
_PATH_EVENTS = {
    "os.remove": 0,
    "os.rename": 0,
    "os.rmdir": 0,
    "os.mkdir": 0,
    "os.symlink": 1,
    "os.link": 1,
    "os.chmod": 0,
    "os.chown": 0,
    "os.truncate": 0,
    "shutil.rmtree": 0,
    "os.utime": 0,
}


def install_audit_hook(workdir: str, guard_writes: bool, layers: list[str]) -> None:
    """Friendlier errors for the obvious attempts. NOT a security boundary: code can bypass
    it (``_posixsubprocess.fork_exec`` raises no event); the kernel layers are the boundary."""
    root = os.path.realpath(workdir)
    real = os.path.realpath

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor: its opening was checked
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        full = real(os.path.join(root, str(path)))
        return full == root or full.startswith(root + os.sep)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(_ALWAYS_DENIED):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if not guard_writes:
            return
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing and path is not None and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the work directory")
        elif event in _PATH_EVENTS and args:
            index = _PATH_EVENTS[event]
            if len(args) > index and not inside(args[index]):
                raise PermissionError(f"sandbox: {event} outside the work directory")

    sys.addaudithook(hook)
    layers.append("audit-hook" + ("+writes" if guard_writes else ""))
