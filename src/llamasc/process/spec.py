"""What to run: one llama-server child, fully described, and its argv."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llamasc.errors import ConfigError

# The pool owns these: a child must listen exactly where the pool will look for it.
OWNED_FLAGS = frozenset({"-m", "--model", "--host", "--port", "-a", "--alias"})


@dataclass(frozen=True)
class LaunchSpec:
    """One llama-server child: binary, model, merged and validated flags, and where it listens.

    ``args`` must not contain ``-m``/``--host``/``--port``: :func:`build_argv` adds them.
    ``env`` is added last to the scrubbed environment (see :func:`llamasc.process.child_env`).
    ``label`` names the child in the daemon log: ``[sidecar:<label>:<port>]``.
    ``alias`` is the model name llama-server reports in responses and ``/v1/models``; without
    it llama-server reports the model's full local path to every client.
    """

    binary: Path
    model_path: Path
    args: tuple[str, ...]
    port: int
    host: str = "127.0.0.1"
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    log_file: Path | None = None
    label: str = ""
    ring_lines: int = 200
    alias: str = ""

    def __post_init__(self) -> None:
        # Accept lists and str paths from callers, store the canonical immutable forms.
        object.__setattr__(self, "binary", Path(self.binary))
        object.__setattr__(self, "model_path", Path(self.model_path))
        object.__setattr__(self, "args", tuple(self.args))
        if self.log_file is not None:
            object.__setattr__(self, "log_file", Path(self.log_file))
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"sidecar port must be within 1-65535, got {self.port}")
        owned = sorted(OWNED_FLAGS.intersection(self.args))
        if owned:
            raise ConfigError(
                f"llama-server flags {', '.join(owned)} are set by llamasc, not per model"
            )
        if self.ring_lines < 1:
            raise ConfigError(f"ring_lines must be at least 1, got {self.ring_lines}")

    @property
    def connect_host(self) -> str:
        """Where a client on this machine reaches the child (wildcards become loopback)."""
        if self.host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (IPv6 hosts in brackets)."""
        host = self.connect_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def prefix(self) -> str:
        """The daemon log prefix for this child's lines."""
        return f"[sidecar:{self.label}:{self.port}] "


def build_argv(spec: LaunchSpec) -> list[str]:
    """``[binary, *args, "-m", model, ("--alias", alias,) "--host", host, "--port", port]``.

    Values are always separate elements: llama-server has no ``--flag=value`` form.
    """
    alias = ["--alias", spec.alias] if spec.alias else []
    return [
        str(spec.binary),
        *spec.args,
        "-m",
        str(spec.model_path),
        *alias,
        "--host",
        spec.host,
        "--port",
        str(spec.port),
    ]
