"""A Transport that records every command and file and answers from a script (no network).

Commands are answered by the first matching rule ``(regex, handler)``; a handler returns
``(exit_code, stdout)`` or a CommandResult, and may change the fake host's state. PowerShell
``-EncodedCommand`` lines are decoded in :attr:`log` so tests read the script itself.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from llamasc.remote.transport import CommandResult

Handler = Callable[[str], "tuple[int, str] | CommandResult"]
_PS = re.compile(r"^powershell -NoProfile -NonInteractive -EncodedCommand (\S+)$")


def decode(command: str) -> str:
    m = _PS.match(command)
    if not m:
        return command
    return "PS> " + base64.b64decode(m.group(1)).decode("utf-16-le")


@dataclass
class StaticForward:
    local_port: int

    def close(self) -> None:
        pass


@dataclass
class RecordingTransport:
    host: str = "winbox"
    forward_to: int = 1  # the local port a forward leads to (a test HTTP server)
    rules: list[tuple[str, Handler]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    forwarded: list[int] = field(default_factory=list)
    busy_ports: set[int] = field(default_factory=set)

    def on(self, pattern: str, handler: Handler | tuple[int, str]) -> None:
        fn = handler if callable(handler) else (lambda _c, r=handler: r)
        self.rules.append((pattern, fn))

    def run(self, command: str, *, timeout: float = 60.0, retry: bool = True) -> CommandResult:
        shown = decode(command)
        self.log.append(shown)
        for pattern, handler in self.rules:
            if re.search(pattern, shown):
                out = handler(shown)
                if isinstance(out, CommandResult):
                    return out
                code, stdout = out
                return CommandResult(command, code, stdout, "")
        return CommandResult(command, 0, "", "")

    def write_file(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        self.log.append(f"PUT {path}")
        self.files[path] = data

    def read_file(self, path: str, *, max_bytes: int = 1 << 20) -> bytes:
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path][-max_bytes:]

    def exists(self, path: str) -> bool:
        return path in self.files

    def makedirs(self, path: str) -> None:
        self.log.append(f"MKDIR {path}")

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix) :].split("/")[0] for p in self.files if p.startswith(prefix)})

    def forward(self, remote_port: int) -> StaticForward:
        self.forwarded.append(remote_port)
        return StaticForward(self.forward_to)

    def port_in_use(self, remote_port: int) -> bool:
        return remote_port in self.busy_ports

    def close(self) -> None:
        pass
