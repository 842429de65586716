"""Running untrusted generated code (HumanEval samples): one locked-down subprocess each.

What is enforced where (Linux; each layer is applied when the host allows it and reported):

=====================  ==========================================================  ==========
limit                  how                                                          by
=====================  ==========================================================  ==========
wall clock             timeout, then SIGKILL to the whole process group             parent
CPU time               RLIMIT_CPU (SIGKILL at the hard limit)                       kernel
memory                 RLIMIT_AS                                                    kernel
file size              RLIMIT_FSIZE                                                 kernel
processes              RLIMIT_NPROC (as uid 65534 when started as root)             kernel
leftover processes     PID namespace: all die with the program's first process      kernel
network                empty network namespace; Landlock TCP rules (ABI >= 4)       kernel
files                  fresh temp cwd; Landlock: writes only beneath it             kernel
signals out            Landlock scope (ABI >= 6); uid 65534 when started as root    kernel
sockets, ctypes,       Python audit hook (also guards writes when no Landlock)      in-process
shell, subprocess
environment            minimal env, ``python -I``                                   parent
=====================  ==========================================================  ==========

On macOS only the rlimits, the process group and the audit hook apply; on Windows only the
timeout and the audit hook. ``probe_layers()`` says what this host applies.
"""

from llamasc.eval.sandbox.runner import (
    ExecResult,
    SandboxLimits,
    probe_layers,
    run_check,
    run_program,
)

__all__ = ["ExecResult", "SandboxLimits", "probe_layers", "run_check", "run_program"]
