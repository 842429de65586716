"""Running untrusted generated code (HumanEval samples): one locked-down process tree each.

Which layer stops what (Linux; each layer is applied when the host allows it and reported by
``probe_layers``). The kernel layers are the boundary; the audit hook only turns the obvious
attempts into a readable error, and nothing relies on it (``_posixsubprocess.fork_exec``, for
one, raises no audit event: Landlock, the namespaces and the uid still stop what it starts).

=========================  =======================================================  =========
threat                     stopped by                                               where
=========================  =======================================================  =========
forged verdict             tests run in the harness process, the program in a       processes
                           worker with no report descriptor; answers are plain
                           data (``run_check``); nested Landlock domain + PID-ns
                           init: the worker cannot ptrace, signal or kill it
reading host files         Landlock read rules (interpreter prefix, its stdlib,     kernel
                           system libraries, the work directory only); the
                           sandbox's own uid and no capability (no
                           CAP_DAC_READ_SEARCH); a tmpfs over a mode-700 home
                           that holds the interpreter, with only its prefix bound
other processes            a private /proc (mount + PID namespace); Landlock        kernel
                           (no /proc at all); non-dumpable harness
writing outside            Landlock (writes only beneath the work directory); uid   kernel
network                    empty network namespace; Landlock TCP rules (ABI >= 4)   kernel
signals out                Landlock scope (ABI >= 6); the sandbox's own uid         kernel
process count              RLIMIT_NPROC, counted for this sandbox alone: its own    kernel
                           uid leased from a range when started as root
                           (``uids``), its own user namespace otherwise
leftover processes         PID namespace: all die with the harness                  kernel
wall clock                 timeout, then SIGKILL to the whole process group         parent
CPU, memory, file size     RLIMIT_CPU (SIGKILL at hard), RLIMIT_AS, RLIMIT_FSIZE    kernel
sockets, ctypes, shell     audit hook: friendlier errors only (see above)           in-process
environment                minimal env, ``python -I``                               parent
=========================  =======================================================  =========

On macOS only the rlimits, the process split and the audit hook apply; on Windows (no fork)
program and tests share one process, so only the timeout and the audit hook apply and a
program could forge its verdict (``probe_layers`` then reports ``in-process``).
"""

from llamasc.eval.sandbox.runner import (
    ExecResult,
    SandboxLimits,
    probe_layers,
    run_check,
    run_program,
)

__all__ = ["ExecResult", "SandboxLimits", "probe_layers", "run_check", "run_program"]
