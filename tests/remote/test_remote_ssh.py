"""SSHTransport against a real sshd on loopback: config, host keys, commands, SFTP, forward."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llamasc.errors import RemoteError
from llamasc.remote.ssh import SSHOptions, SSHTransport, resolve_target
from sshd_fixture import ALIAS, SshServer

pytestmark = pytest.mark.sshd


def _opts(sshd: SshServer, **kw: object) -> SSHOptions:
    return SSHOptions(host=ALIAS, ssh_config=sshd.ssh_config, **kw)  # type: ignore[arg-type]


@pytest.fixture
def ssh(sshd: SshServer) -> Iterator[SSHTransport]:
    t = SSHTransport(_opts(sshd))
    yield t
    t.close()


def test_ssh_config_alias_is_resolved(sshd: SshServer) -> None:
    target = resolve_target(_opts(sshd))
    assert (target.hostname, target.port, target.user) == ("127.0.0.1", sshd.port, sshd.user)
    assert target.identity_files == (str(sshd.key),)
    assert target.known_hosts_files[0] == sshd.known_hosts


def test_command_line_options_win_over_ssh_config(sshd: SshServer) -> None:
    target = resolve_target(_opts(sshd, port=2, user="someone"))
    assert (target.port, target.user) == (2, "someone")


def test_run_returns_exit_code_stdout_and_stderr(ssh: SSHTransport) -> None:
    res = ssh.run("printf out; printf err >&2; exit 3")
    assert (res.exit_code, res.stdout, res.stderr) == (3, "out", "err")


def test_run_times_out_instead_of_hanging(ssh: SSHTransport) -> None:
    with pytest.raises(RemoteError, match="timed out"):
        ssh.run("sleep 5", timeout=0.5)
    assert ssh.run("echo still usable").stdout == "still usable\n"


def test_unknown_host_key_is_rejected_by_default(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(sshd.ssh_config.read_text().replace(str(sshd.known_hosts), str(empty)))
    t = SSHTransport(SSHOptions(host=ALIAS, ssh_config=cfg))
    with pytest.raises(RemoteError, match="not in known_hosts"):
        t.connect()


def test_accept_new_host_key_saves_it_and_connects(sshd: SshServer, tmp_path: Path) -> None:
    kh = tmp_path / "kh" / "known_hosts"
    cfg = tmp_path / "ssh_config"
    cfg.write_text(sshd.ssh_config.read_text().replace(str(sshd.known_hosts), str(kh)))
    t = SSHTransport(SSHOptions(host=ALIAS, ssh_config=cfg, accept_new_host_key=True))
    try:
        assert t.run("echo hi").stdout == "hi\n"
    finally:
        t.close()
    assert kh.read_text().strip() == f"[127.0.0.1]:{sshd.port} {sshd.host_pubkey}"
    # and the saved key is now trusted without the opt-in
    t2 = SSHTransport(SSHOptions(host=ALIAS, ssh_config=cfg))
    try:
        assert t2.run("echo again").ok
    finally:
        t2.close()


def test_changed_host_key_is_refused_even_with_accept_new(sshd: SshServer, tmp_path: Path) -> None:
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(sshd.ssh_config.read_text().replace(str(sshd.known_hosts), str(kh)))
    t = SSHTransport(SSHOptions(host=ALIAS, ssh_config=cfg, accept_new_host_key=True))
    with pytest.raises(RemoteError, match="does not match known_hosts"):
        t.connect()


def test_wrong_key_fails_authentication(sshd: SshServer, tmp_path: Path) -> None:
    import subprocess

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    t = SSHTransport(_opts(sshd, identity_files=(str(key),)))
    with pytest.raises(RemoteError, match="authentication"):
        t.connect()


def test_sftp_files(ssh: SSHTransport, tmp_path: Path) -> None:
    base = str(tmp_path / "a b" / "c'd")
    ssh.makedirs(base)
    path = f"{base}/f.txt"
    assert not ssh.exists(path)
    ssh.write_file(path, b"x" * 100 + b"tail", mode=0o600)
    assert ssh.exists(path)
    assert (Path(path).stat().st_mode & 0o777) == 0o600
    assert ssh.read_file(path, max_bytes=4) == b"tail"
    assert ssh.listdir(base) == ["f.txt"]
    assert ssh.listdir(base + "/missing") == []
    with pytest.raises(FileNotFoundError):
        ssh.read_file(base + "/missing")


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_forward_reaches_a_port_on_the_host(ssh: SSHTransport, http_server: int) -> None:
    fwd = ssh.forward(http_server)
    try:
        with httpx.Client(trust_env=False) as client:
            for i in range(3):  # several requests, keep-alive or not
                r = client.get(f"http://127.0.0.1:{fwd.local_port}/x{i}")
                assert r.text == f"hello /x{i}"
    finally:
        fwd.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{fwd.local_port}/", timeout=2, trust_env=False)


def test_port_in_use(ssh: SSHTransport, http_server: int) -> None:
    assert ssh.port_in_use(http_server)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert not ssh.port_in_use(free)


def test_reconnects_after_the_connection_drops(ssh: SSHTransport, http_server: int) -> None:
    fwd = ssh.forward(http_server)
    try:
        assert ssh.run("echo one").stdout == "one\n"
        client = ssh.connect()
        transport = client.get_transport()
        assert transport is not None
        transport.close()  # what a network drop looks like to paramiko
        assert not ssh.is_connected()
        assert ssh.run("echo two").stdout == "two\n"
        # the forward opens its channels on the new connection
        r = httpx.get(f"http://127.0.0.1:{fwd.local_port}/after", timeout=5, trust_env=False)
        assert r.text == "hello /after"
    finally:
        fwd.close()
