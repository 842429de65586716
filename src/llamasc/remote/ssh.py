"""The SSH transport: paramiko with OpenSSH's habits.

- ``~/.ssh/config`` is honoured (HostName, User, Port, IdentityFile, UserKnownHostsFile);
  options given on our command line win, as with ``ssh``.
- Host keys are checked against known_hosts with paramiko's ``RejectPolicy``; an unknown host
  is only accepted (and appended to known_hosts) when the operator opted in.
- Every command has a deadline; ``recv_exit_status`` (no timeout) is never used.
- Keepalives during long runs; a dropped connection is re-opened on the next operation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamasc.errors import RemoteError
from llamasc.remote.forward import ChannelForward
from llamasc.remote.transport import CommandResult

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SSHOptions:
    """How to reach a host. ``None`` means: from ``~/.ssh/config``, else OpenSSH's default."""

    host: str
    user: str | None = None
    port: int | None = None
    identity_files: tuple[str, ...] = ()
    ssh_config: Path | None = field(default_factory=lambda: Path("~/.ssh/config").expanduser())
    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    connect_timeout: float = 15.0
    keepalive_s: int = 30
    reconnect_attempts: int = 3


@dataclass(frozen=True)
class ResolvedTarget:
    """Where ``SSHOptions.host`` actually leads once ``~/.ssh/config`` is applied."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    known_hosts_files: tuple[Path, ...]


def resolve_target(options: SSHOptions) -> ResolvedTarget:
    """Apply ``~/.ssh/config`` to the options (command-line values win)."""
    import paramiko

    entry: dict[str, Any] = {}
    if options.ssh_config is not None and options.ssh_config.is_file():
        try:
            entry = dict(paramiko.SSHConfig.from_path(str(options.ssh_config)).lookup(options.host))
        except (OSError, paramiko.SSHException) as exc:  # a broken config is the user's error
            raise RemoteError(f"cannot read SSH config {options.ssh_config}: {exc}") from None
    hostname = str(entry.get("hostname") or options.host)
    try:
        port = options.port or int(entry.get("port") or 22)
    except ValueError:
        raise RemoteError(f"bad Port in SSH config for {options.host}: {entry['port']}") from None
    user = options.user or str(entry.get("user") or _local_user())
    identities = options.identity_files or tuple(entry.get("identityfile") or ())
    known: list[Path] = []
    if options.known_hosts is not None:
        known.append(options.known_hosts)
    for name in str(entry.get("userknownhostsfile") or "").split():
        known.append(Path(name).expanduser())
    default_known = Path("~/.ssh/known_hosts").expanduser()
    if default_known not in known:
        known.append(default_known)
    return ResolvedTarget(
        alias=options.host,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=tuple(str(Path(p).expanduser()) for p in identities),
        known_hosts_files=tuple(known),
    )


def _local_user() -> str:
    import getpass

    return getpass.getuser()


def _known_hosts_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


class _AcceptNewPolicy:
    """``StrictHostKeyChecking accept-new``: trust an unknown key once and remember it.

    A *changed* key never reaches a policy: paramiko raises BadHostKeyException first.
    """

    def __init__(self, save_to: Path) -> None:
        self.save_to = save_to

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.save_to.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.save_to, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.warning(
            "accepted new host key for %s (%s %s), saved to %s",
            hostname,
            key.get_name(),
            key.fingerprint,
            self.save_to,
        )


class SSHTransport:
    """A :class:`~llamasc.remote.transport.Transport` over one paramiko connection."""

    def __init__(self, options: SSHOptions) -> None:
        self.options = options
        self.target = resolve_target(options)
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()

    @property
    def host(self) -> str:
        return self.options.host

    def __repr__(self) -> str:
        t = self.target
        return f"SSHTransport({t.user}@{t.hostname}:{t.port})"

    # -- connection ------------------------------------------------------------------------

    def connect(self) -> paramiko.SSHClient:
        """Open the connection (if it is not open) and return the client."""
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return self._client
                self._drop()
            self._client = self._connect_once()
            return self._client

    def _connect_once(self) -> paramiko.SSHClient:
        import paramiko

        t = self.target
        client = paramiko.SSHClient()
        for path in t.known_hosts_files:
            if path.is_file():
                try:
                    client.load_host_keys(str(path))
                except (OSError, paramiko.SSHException) as exc:
                    log.warning("ignoring unreadable known_hosts %s: %s", path, exc)
        policy: Any = (
            _AcceptNewPolicy(t.known_hosts_files[0])
            if self.options.accept_new_host_key
            else paramiko.RejectPolicy()
        )
        client.set_missing_host_key_policy(policy)
        where = f"{t.user}@{t.hostname}:{t.port}"
        try:
            client.connect(
                t.hostname,
                port=t.port,
                username=t.user,
                key_filename=list(t.identity_files) or None,  # type: ignore[arg-type]
                timeout=self.options.connect_timeout,
                banner_timeout=self.options.connect_timeout,
                auth_timeout=self.options.connect_timeout,
                channel_timeout=self.options.connect_timeout,
                allow_agent=True,
                look_for_keys=True,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise RemoteError(
                f"the host key of {_known_hosts_name(t.hostname, t.port)} does not match "
                f"known_hosts (got {exc.key.get_name()} {exc.key.fingerprint}): refusing to connect"
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RemoteError(f"SSH authentication to {where} failed: {exc}") from None
        except paramiko.SSHException as exc:
            client.close()
            if "known_hosts" in str(exc):
                raise RemoteError(
                    f"{_known_hosts_name(t.hostname, t.port)} is not in known_hosts: check its "
                    "fingerprint and add it (ssh-keyscan), or pass --accept-new-host-key"
                ) from None
            raise RemoteError(f"SSH connection to {where} failed: {exc}") from None
        except OSError as exc:
            client.close()
            raise RemoteError(f"cannot connect to {where}: {exc}") from None
        transport = client.get_transport()
        if transport is not None and self.options.keepalive_s > 0:
            transport.set_keepalive(self.options.keepalive_s)
        log.debug("connected to %s", where)
        return client

    def _drop(self) -> None:
        with self._lock:
            if self._sftp is not None:
                with contextlib.suppress(Exception):
                    self._sftp.close()
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
            self._sftp = None
            self._client = None

    def reconnect(self) -> None:
        """Drop the connection and open a new one, retrying with a short backoff."""
        self._drop()
        delay = 0.5
        for attempt in range(1, self.options.reconnect_attempts + 1):
            try:
                self.connect()
                return
            except RemoteError as exc:
                if attempt == self.options.reconnect_attempts:
                    raise
                log.warning("reconnect to %s failed (%s); retrying", self.host, exc)
                time.sleep(delay)
                delay *= 2

    def is_connected(self) -> bool:
        with self._lock:
            if self._client is None:
                return False
            transport = self._client.get_transport()
            return transport is not None and transport.is_active()

    def close(self) -> None:
        self._drop()

    # -- operations ------------------------------------------------------------------------

    def _with_retry(self, what: str, op: Any, *, retry: bool = True) -> Any:
        import paramiko

        for attempt in (1, 2):
            self.connect()
            try:
                return op()
            except FileNotFoundError:
                raise
            except TimeoutError:
                raise RemoteError(f"{self.host}: {what} timed out") from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if self.is_connected() and isinstance(exc, OSError):
                    raise RemoteError(f"{self.host}: {what} failed: {exc}") from None
                if attempt == 2 or not retry:
                    raise RemoteError(
                        f"{self.host}: connection lost during {what}: {exc}"
                    ) from None
                log.warning("connection to %s lost during %s; reconnecting", self.host, what)
                self.reconnect()
        raise AssertionError("unreachable")

    def run(self, command: str, *, timeout: float = 60.0, retry: bool = True) -> CommandResult:
        result: CommandResult = self._with_retry(
            f"command {command[:60]!r}", lambda: self._exec(command, timeout), retry=retry
        )
        log.debug("%s$ %s -> %d", self.host, command, result.exit_code)
        return result

    def _exec(self, command: str, timeout: float) -> CommandResult:
        client = self.connect()
        transport = client.get_transport()
        if transport is None:
            raise EOFError("no transport")
        chan = transport.open_session(timeout=self.options.connect_timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(command)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                if (
                    chan.exit_status_ready()
                    and not chan.recv_ready()
                    and not (chan.recv_stderr_ready())
                ):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(command)
                # the channel's pipe becomes readable on data, stderr data and close
                select.select([chan], [], [], min(left, 0.5))
            status = chan.recv_exit_status()  # already known: returns at once
        finally:
            chan.close()
        return CommandResult(
            command=command,
            exit_code=status,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
        )

    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._lock:
            client = self.connect()
            if self._sftp is None:
                self._sftp = client.open_sftp()
                chan = self._sftp.get_channel()
                if chan is not None:
                    chan.settimeout(self.options.connect_timeout * 4)
            return self._sftp

    def write_file(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        def op() -> None:
            sftp = self._sftp_client()
            with sftp.open(path, "wb") as fh:
                fh.write(data)
            if mode is not None:
                sftp.chmod(path, mode)

        self._with_retry(f"upload of {path}", op)

    def read_file(self, path: str, *, max_bytes: int = 1 << 20) -> bytes:
        def op() -> bytes:
            sftp = self._sftp_client()
            with sftp.open(path, "rb") as fh:
                size = fh.stat().st_size or 0
                fh.seek(max(0, size - max_bytes))
                return bytes(fh.read(max_bytes))

        data: bytes = self._with_retry(f"download of {path}", op)
        return data

    def exists(self, path: str) -> bool:
        def op() -> bool:
            try:
                self._sftp_client().stat(path)
            except FileNotFoundError:
                return False
            return True

        found: bool = self._with_retry(f"stat of {path}", op)
        return found

    def makedirs(self, path: str) -> None:
        def mk(p: str) -> None:
            sftp = self._sftp_client()
            try:
                sftp.stat(p)
                return
            except FileNotFoundError:
                pass
            parent = p.rstrip("/").rsplit("/", 1)[0]
            if parent and parent != p:
                mk(parent)
            with contextlib.suppress(OSError):  # a concurrent mkdir is fine
                sftp.mkdir(p)

        self._with_retry(f"mkdir of {path}", lambda: mk(path))

    def listdir(self, path: str) -> list[str]:
        def op() -> list[str]:
            try:
                return sorted(self._sftp_client().listdir(path))
            except FileNotFoundError:
                return []

        names: list[str] = self._with_retry(f"listing of {path}", op)
        return names

    def _open_direct(self, remote_port: int, src: tuple[str, int]) -> Any:
        transport = self.connect().get_transport()
        if transport is None:
            raise EOFError("no transport")
        return transport.open_channel(
            "direct-tcpip", ("127.0.0.1", remote_port), src, timeout=self.options.connect_timeout
        )

    def forward(self, remote_port: int) -> ChannelForward:
        return ChannelForward(lambda src: self._open_direct(remote_port, src), remote_port)

    def port_in_use(self, remote_port: int) -> bool:
        import paramiko

        def op() -> bool:
            try:
                chan = self._open_direct(remote_port, ("127.0.0.1", 0))
            except paramiko.ChannelException:
                return False  # "Connect failed": nothing listens there
            chan.close()
            return True

        used: bool = self._with_retry(f"probe of port {remote_port}", op)
        return used


__all__ = ["ResolvedTarget", "SSHOptions", "SSHTransport", "resolve_target"]
