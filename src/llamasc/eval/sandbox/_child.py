"""Run one untrusted program after locking the process down (the child side of the sandbox).

Started as ``python -I _child.py CONFIG_JSON`` in a fresh temporary directory with a minimal
environment, in its own session. Stdlib only; it must not import llamasc. It applies, in this
order, every layer the host allows, then ``exec``s ``prog.py``:

1. rlimits: core 0, CPU seconds, address space (RLIMIT_AS), file size, open files.
2. Linux namespaces: a new network namespace (no interfaces but a down loopback, so no network
   at all) and a new PID namespace (when the program's first process exits, the kernel kills
   every process it left behind). Unprivileged users get them inside a new user namespace.
3. Root only: switch to uid/gid 65534 (nobody) with no capabilities, because RLIMIT_NPROC does
   not bind uid 0. ``CAP_DAC_READ_SEARCH`` is kept only when the interpreter's own files are
   not readable by others (e.g. a Python installed under /root).
4. RLIMIT_NPROC (process count), then ``no_new_privs``.
5. Landlock (Linux >= 5.13): read/execute anywhere, write only beneath the work directory;
   ABI >= 4 also refuses every TCP bind/connect; ABI >= 6 stops signals to processes outside
   the sandbox and abstract unix sockets.
6. A Python audit hook: no sockets, no ctypes, no os.system/exec/spawn/subprocess; and when
   Landlock is not there, no writes outside the work directory (best effort: in-process only).

The layers applied are written as one JSON line to the report file (outside the work
directory, opened before the lockdown); ``ok`` follows when
the program ran to its end, so a program that exits early with status 0 is not a pass.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import traceback
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
CAP_DAC_READ_SEARCH = 2
NOBODY = 65534
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _errno() -> str:
    import ctypes

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


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def enter_namespaces(layers: list[str]) -> bool:
    """New net + PID namespaces; returns whether a PID namespace was made (caller must fork)."""
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    base = CLONE_NEWNET if uid == 0 else CLONE_NEWUSER | CLONE_NEWNET
    for flags in (base | CLONE_NEWPID, base):
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
    if flags & CLONE_NEWPID:
        layers.append("pidns")
        return True
    return False


def _world_readable(path: str) -> bool:
    import stat

    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(1, len(parts) + 1):
        prefix = os.sep.join(parts[:i]) or os.sep
        try:
            mode = os.stat(prefix).st_mode
        except OSError:
            continue
        need = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
        if not mode & need:
            return False
    return True


def drop_root(layers: list[str]) -> None:
    """uid 0 ignores RLIMIT_NPROC and owns the host: become nobody without capabilities."""
    import ctypes

    libc = _libc()
    keep = 0
    if not all(_world_readable(p) for p in sys.path if p and os.path.exists(p)):
        keep = 1 << CAP_DAC_READ_SEARCH
    for cap in range(64):
        if cap != CAP_DAC_READ_SEARCH or not keep:
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    data = (Data * 2)(Data(keep, keep, 0), Data(0, 0, 0))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(f"capset failed: {_errno()}")
    layers.append("nobody" + ("+dac_read_search" if keep else ""))


def set_nproc(cfg: dict[str, Any], layers: list[str]) -> None:
    try:
        import resource
    except ImportError:
        return
    n = int(cfg["nproc"])
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
        layers.append("rlimit_nproc")
    except (ValueError, OSError, AttributeError):
        pass


def landlock(workdir: str, layers: list[str]) -> bool:
    """Write only beneath ``workdir``; no TCP; no signals out. Returns whether it applied."""
    import ctypes

    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return False
    fs_bits = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}.get(abi, 16)
    handled_fs = (1 << fs_bits) - 1
    read_only = 1 | 4 | 8  # EXECUTE | READ_FILE | READ_DIR
    attr = (ctypes.c_uint64 * 3)(handled_fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return False

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    try:
        for path, access in (("/", read_only), (workdir, handled_fs)):
            fd = os.open(path, getattr(os, "O_PATH", 0) | os.O_CLOEXEC)
            rule = PathBeneath(access, fd)
            rc = libc.syscall(445, ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0))
            os.close(fd)
            if rc != 0:
                raise OSError(f"landlock_add_rule: {_errno()}")
        if libc.syscall(446, ruleset, ctypes.c_uint32(0)) != 0:
            raise OSError(f"landlock_restrict_self: {_errno()}")
    finally:
        os.close(ruleset)
    layers.append(f"landlock-v{abi}")
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


def _reap(pid: int) -> int:
    """Wait for the namespace's first process and return an exit code for it."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main() -> int:
    cfg: dict[str, Any] = json.loads(sys.argv[1])
    # opened before any lockdown: the locked-down program could not open it any more
    report = os.open(cfg["report_path"], os.O_WRONLY | os.O_APPEND)
    workdir = os.getcwd()
    layers: list[str] = []
    with open("prog.py", encoding="utf-8") as fh:
        source = fh.read()
    set_rlimits(cfg, layers)
    landlocked = False
    if sys.platform.startswith("linux"):
        if cfg.get("namespaces", True) and enter_namespaces(layers):
            child = os.fork()
            if child:
                os.close(report)
                return _reap(child)
        if os.geteuid() == 0 and cfg.get("drop_root", True):
            drop_root(layers)
        set_nproc(cfg, layers)
        _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if cfg.get("landlock", True):
            landlocked = landlock(workdir, layers)
    else:
        set_nproc(cfg, layers)
    if cfg.get("audit_hook", True):
        install_audit_hook(workdir, guard_writes=not landlocked, layers=layers)
    os.write(report, (json.dumps({"layers": layers}) + "\n").encode())
    code = compile(source, "prog.py", "exec")
    try:
        exec(code, {"__name__": "__main__", "__builtins__": builtins})  # noqa: S102 - the point
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    os.write(report, b"ok\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
