"""What a launcher needs from a host connection, as a protocol (SSH in production, fakes in tests).

Paths given to the file methods are SFTP paths: POSIX paths on Linux, ``/C:/...`` on Windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one remote command."""

    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def output(self) -> str:
        """stdout and stderr together (tools like llama-server --version use stderr)."""
        return self.stdout + self.stderr


class Forward(Protocol):
    """A local listening socket whose connections reach a port on the remote host."""

    @property
    def local_port(self) -> int: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """A connection to one host: commands, small files, port forwards."""

    @property
    def host(self) -> str: ...

    def run(self, command: str, *, timeout: float = 60.0, retry: bool = True) -> CommandResult:
        """Run ``command`` in the host's shell; ``retry`` allows a rerun after a reconnect."""
        ...

    def write_file(self, path: str, data: bytes, *, mode: int | None = None) -> None: ...

    def read_file(self, path: str, *, max_bytes: int = 1 << 20) -> bytes:
        """The file's last ``max_bytes`` bytes."""
        ...

    def exists(self, path: str) -> bool: ...

    def makedirs(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]:
        """Entry names; an empty list when ``path`` does not exist."""
        ...

    def forward(self, remote_port: int) -> Forward:
        """Forward a fresh local port to ``127.0.0.1:remote_port`` on the host."""
        ...

    def port_in_use(self, remote_port: int) -> bool:
        """True when something on the host accepts connections on ``127.0.0.1:remote_port``."""
        ...

    def close(self) -> None: ...


__all__ = ["CommandResult", "Forward", "Transport"]
