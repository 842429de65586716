"""Run one untrusted program locked down (the child side of the sandbox; stdlib only).

Started as ``python -I _child.py CONFIG_JSON`` in a fresh work directory with a minimal
environment, in its own session. Three processes, each trusting only what is above it:

* **starter** (this script as started): opens the report and test descriptors while it still
  may, sets the rlimits, enters new net/mount/PID namespaces (inside a new user namespace when
  not root) and forks the harness; it only waits and passes the harness's exit status on.
* **harness** (pid 1 of the new PID namespace): mounts a private ``/proc``, makes the
  interpreter reachable without ``CAP_DAC_READ_SEARCH`` (``_layers.expose``), drops root for
  this sandbox's own uid with no capabilities (or just drops every capability when not root),
  sets RLIMIT_NPROC and no_new_privs, applies Landlock (read only the interpreter, its
  standard library, system libraries and the work directory; write only the work directory;
  no TCP; no signals out), becomes non-dumpable, then forks the worker.
* **worker**: closes every descriptor but its two pipes and stdout/stderr (it has no report
  channel at all), applies Landlock again (a nested domain: it can neither ptrace nor signal
  the harness, which as a namespace init also ignores SIGKILL from inside), adds the audit
  hook, and only then reads and runs ``prog.py``.

The verdict comes from the harness alone. In ``check`` mode (HumanEval) the harness runs the
dataset's prompt and tests itself, with the tested function replaced by a proxy that calls the
worker (``_calls``): forging a report, ``os._exit(0)``, ``sys.exit(0)`` in the function, a
rewritten ``check`` or a deleted test all leave the tests unfinished or failing in a process
the program cannot touch. The test text is read by the harness from a descriptor opened by the
starter, only after the worker was forked, so it is not in the worker's memory either. In
``program`` mode there is no separate test: the harness reports whether the program ran to
its end (a program can always claim that about itself).

Report lines (harness only): ``{"layers": [...]}`` then ``{"verdict": "passed"|"failed",
"detail": ...}``.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import linecache
import os
import signal
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llamasc.eval.sandbox import _calls, _layers
else:  # run as a script: its own directory is not on sys.path under -I, and no llamasc import
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _calls
    import _layers

LINUX = sys.platform.startswith("linux")


def _report(fd: int, obj: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(obj) + "\n").encode())


def _last_line(exc: BaseException) -> str:
    """The exception, and the line of the tests that raised it when it came from them."""
    head = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-200:]
    frames = traceback.extract_tb(exc.__traceback__)
    where = next((f for f in reversed(frames) if f.filename == "test.py"), None)
    if where is not None and where.line:
        return f"{head} at test.py:{where.lineno}: {where.line.strip()[:100]}"
    return head


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _worker_end(pid: int) -> tuple[int | None, str]:
    """How the worker ended (it closed its pipe): its exit status, or the signal that killed
    it (which names the limit it hit)."""
    deadline = time.monotonic() + 2.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return None, ""
        time.sleep(0.01)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return None, f"killed by {name} (a CPU, memory or file-size limit?)"
    return os.WEXITSTATUS(status), ""


def lock_harness(cfg: dict[str, Any], workdir: str, readable: list[str], layers: list[str]) -> bool:
    """Everything the harness applies to itself (inherited by the worker); returns whether
    Landlock applied."""
    if not LINUX:
        _layers.set_nproc(int(cfg["nproc"]), layers)
        return False
    _layers.private_proc(layers)
    if os.geteuid() == 0 and cfg.get("drop_root", True):
        _layers.expose([*readable, workdir], layers)
        _layers.drop_root(int(cfg["uid"]), layers)
    elif "userns" in layers:
        _layers.drop_capabilities(layers)
    _layers.set_nproc(int(cfg["nproc"]), layers)
    _layers.no_new_privs()
    landlocked = bool(cfg.get("landlock", True)) and _layers.landlock(workdir, readable, layers)
    _layers.not_dumpable()
    return landlocked


def worker(
    cfg: dict[str, Any], workdir: str, readable: list[str], landlocked: bool, pipes: list[int]
) -> int:
    """The untrusted side. Returns an exit status (only meaningful in program mode)."""
    requests, answers = pipes
    keep = {0, 1, 2, requests, answers}
    for fd in range(3, int(cfg["nofile"]) + 3):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    scratch: list[str] = []
    if landlocked:
        _layers.landlock(workdir, readable, scratch, "-nested")
    if cfg.get("audit_hook", True):
        _layers.install_audit_hook(workdir, guard_writes=not landlocked, layers=scratch)
    with open("prog.py", encoding="utf-8") as fh:
        source = fh.read()
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(source, "prog.py", "exec"), namespace)  # noqa: S102 - the point
        if cfg["mode"] == "check":
            function = namespace[cfg["entry_point"]]
            if not callable(function):
                raise TypeError(f"{cfg['entry_point']} is not a function")
    except BaseException as exc:  # any way out of the program is reported
        traceback.print_exc()
        sys.stderr.flush()
        if cfg["mode"] == "check":
            _calls.send(answers, {"raise": [type(exc).__name__, str(exc)[:500]]})
        return 1
    _calls.send(answers, {"ready": True})
    if cfg["mode"] == "check":
        with os.fdopen(requests, "rb") as stream:
            _calls.serve(function, stream, answers)
    return 0


def harness_check(cfg: dict[str, Any], test_fd: int, proxy: _calls.Proxy) -> None:
    """Run the dataset's prompt and tests here, with the tested function being the proxy."""
    with os.fdopen(test_fd, "r", encoding="utf-8") as fh:
        spec = json.load(fh)
    # so that a failure can quote the assertion that failed
    linecache.cache["test.py"] = (len(spec["test"]), None, spec["test"].splitlines(True), "test.py")
    proxy.ready()
    namespace: dict[str, Any] = {"__name__": "__harness__", "__builtins__": builtins}
    # the prompt (from the dataset) defines the helpers some tests use, e.g. encode_cyclic
    exec(compile(spec["prompt"], "prompt.py", "exec"), namespace)  # noqa: S102
    namespace[spec["entry_point"]] = proxy
    exec(compile(spec["test"], "test.py", "exec"), namespace)  # noqa: S102
    namespace["check"](proxy)
    if proxy.calls == 0:
        raise AssertionError("the tests never called the function")


def in_process(cfg: dict[str, Any], report: int, test_fd: int | None, layers: list[str]) -> int:
    """Without fork (Windows) program and tests share one process: the program could forge
    its verdict here, which ``probe_layers`` makes visible (no ``worker-*`` layer)."""
    _report(report, {"layers": [*layers, "in-process"]})
    with open("prog.py", encoding="utf-8") as fh:
        source = fh.read()
    if test_fd is not None:
        with os.fdopen(test_fd, "r", encoding="utf-8") as fh:
            spec = json.load(fh)
        source += f"\n\n{spec['test']}\n\ncheck({spec['entry_point']})\n"
    if cfg.get("audit_hook", True):
        _layers.install_audit_hook(os.getcwd(), guard_writes=True, layers=[])
    try:
        exec(compile(source, "prog.py", "exec"), {"__name__": "__main__"})  # noqa: S102
    except BaseException as exc:
        _report(report, {"verdict": "failed", "detail": _last_line(exc)})
        return 1
    _report(report, {"verdict": "passed", "detail": ""})
    return 0


def harness(cfg: dict[str, Any], report: int, test_fd: int | None, workdir: str) -> int:
    layers: list[str] = cfg["_layers"]
    readable: list[str] = cfg["_readable"]
    landlocked = lock_harness(cfg, workdir, readable, layers)
    if cfg.get("audit_hook", True):
        layers.append("audit-hook" + ("" if landlocked else "+writes"))
    if landlocked:
        layers.append("worker-landlock-nested")
    if not hasattr(os, "fork"):
        return in_process(cfg, report, test_fd, layers)
    req_r, req_w = os.pipe()  # harness -> worker: calls
    ans_r, ans_w = os.pipe()  # worker -> harness: answers
    pid = os.fork()
    if pid == 0:
        os.close(req_w)
        os.close(ans_r)
        code = 1
        try:
            code = worker(cfg, workdir, readable, landlocked, [req_r, ans_w])
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(req_r)
    os.close(ans_w)
    _report(report, {"layers": layers})
    if cfg.get("audit_hook", True):
        _layers.install_audit_hook(workdir, guard_writes=not landlocked, layers=[])
    verdict, detail = "failed", ""
    answers = os.fdopen(ans_r, "rb")
    try:
        if cfg["mode"] == "check":
            assert test_fd is not None
            harness_check(cfg, test_fd, _calls.Proxy(cfg["entry_point"], req_w, answers))
            verdict = "passed"
        else:
            ran = _calls.receive(answers)
            status, detail = _worker_end(pid)
            if ran == {"ready": True} and status == 0:
                verdict = "passed"
            elif status == 0:
                detail = "exited before the end of the program"
    except _calls.WorkerGone as exc:
        detail = _worker_end(pid)[1] or str(exc)
    except BaseException as exc:  # every failure of the tests is a verdict
        detail = _last_line(exc)
    _report(report, {"verdict": verdict, "detail": detail})
    return 0 if verdict == "passed" else 1


def main() -> int:
    cfg: dict[str, Any] = json.loads(sys.argv[1])
    workdir = os.getcwd()
    # opened before any lockdown; the worker closes both before the program runs
    report = os.open(cfg["report_path"], os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    test_fd = os.open(cfg["test_path"], os.O_RDONLY) if cfg["mode"] == "check" else None
    layers: list[str] = []
    cfg["_readable"] = _layers.read_paths(workdir) if LINUX else []
    _layers.set_rlimits(cfg, layers)
    if LINUX and _layers.enter_namespaces(layers, bool(cfg.get("namespaces", True))):
        harness_pid = os.fork()
        if harness_pid:
            os.close(report)
            if test_fd is not None:
                os.close(test_fd)
            return _reap(harness_pid)
    cfg["_layers"] = layers
    return harness(cfg, report, test_fd, workdir)


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
