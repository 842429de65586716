"""A real OpenSSH server on 127.0.0.1 for the remote and bench tests.

Debian's ``/usr/sbin/sshd`` runs in the foreground (``-D -e``) with a config, host key,
client key and ``authorized_keys`` in a temporary directory, as the current user (root needs
the privilege-separation directory ``/run/sshd``, created if missing). The fixture also
writes a ``known_hosts`` line for it and an ``ssh_config`` with the alias ``benchbox``.

Import it in a conftest: ``from sshd_fixture import sshd`` (tests/ is on sys.path).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
ALIAS = "benchbox"


@dataclass(frozen=True)
class SshServer:
    """How to reach the test sshd."""

    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    ssh_config: Path
    host_pubkey: str
    log: Path
    dir: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


POLLUTED_ENV = {
    "LLAMA_ARG_CTX_SIZE": "64",
    "LLAMA_ARG_N_PARALLEL": "7",
    "LLAMA_ARG_SPEC_TYPE": "ngram-simple",
    "LLAMA_ARG_ALIAS": "hijacked",
    "HF_TOKEN": "remote-secret",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llamasc-test", "-f", str(path)],
        check=True,
    )


def _config(d: Path, port: int) -> str:
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {d / 'host_ed25519'}",
        f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding local",
        "X11Forwarding no",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
        "MaxSessions 100",
        "MaxStartups 100",
        # What a user's login environment may hold: the launchers must scrub it, so every
        # test over this sshd runs with it (and the ones that look check it is gone).
        "SetEnv " + " ".join(f"{k}={v}" for k, v in POLLUTED_ENV.items()),
    ]
    if os.geteuid() == 0:
        lines.append("PermitRootLogin prohibit-password")
    return "\n".join(lines) + "\n"


def _start(d: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    last = ""
    for _attempt in range(3):
        port = _free_port()
        cfg = d / "sshd_config"
        cfg.write_text(_config(d, port))
        subprocess.run([str(SSHD), "-t", "-f", str(cfg)], check=True)
        log = d / f"sshd-{port}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if f"Server listening on 127.0.0.1 port {port}" in text:
                return proc, port, log
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        last = log.read_text(errors="replace")
        proc.kill()
        proc.wait()
    raise RuntimeError(f"sshd did not start: {last[-2000:]}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A running sshd on 127.0.0.1 that accepts the fixture's key for the current user."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        msg = "OpenSSH server is not installed (the test command installs openssh-server)"
        if os.environ.get("LLAMASC_ALLOW_SKIP_REAL") == "1":
            pytest.skip(msg)
        pytest.fail(msg)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    d = tmp_path_factory.mktemp("sshd")
    d.chmod(0o755)
    _keygen(d / "host_ed25519")
    _keygen(d / "client_ed25519")
    shutil.copy(d / "client_ed25519.pub", d / "authorized_keys")
    proc, port, log = _start(d)
    host_pub = " ".join((d / "host_ed25519.pub").read_text().split()[:2])
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    user = getpass.getuser()
    ssh_config = d / "ssh_config"
    ssh_config.write_text(
        f"Host {ALIAS}\n"
        "  HostName 127.0.0.1\n"
        f"  Port {port}\n"
        f"  User {user}\n"
        f"  IdentityFile {d / 'client_ed25519'}\n"
        f"  UserKnownHostsFile {known}\n"
    )
    server = SshServer(
        host="127.0.0.1",
        port=port,
        user=user,
        key=d / "client_ed25519",
        known_hosts=known,
        ssh_config=ssh_config,
        host_pubkey=host_pub,
        log=log,
        dir=d,
        process=proc,
    )
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
