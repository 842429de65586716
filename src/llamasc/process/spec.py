"""What to run: one llama-server child, fully described, and its argv."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from llamasc.errors import ConfigError

# The pool owns these: a child must listen exactly where the pool will look for it.
OWNED_FLAGS = frozenset({"-m", "--model", "--host", "--port", "-a", "--alias"})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class LaunchSpec:
    """One llama-server child: binary, model, merged and validated flags, and where it listens.

    ``args`` must not contain ``-m``/``--host``/``--port``: :func:`build_argv` adds them.
    ``env`` is added last to the scrubbed environment (see :func:`llamasc.process.child_env`).
    ``keep_env`` names variables of the environment the child may inherit although the
    scrub would remove them (``llamasc bench --keep-env VAR``).
    ``label`` names the child in the daemon log: ``[sidecar:<label>:<port>]``.
    ``alias`` is the model name llama-server reports in responses and ``/v1/models``; without
    it llama-server reports the model's full local path to every client.
    ``port`` 0 means "not chosen yet": a launcher picks one before it starts the child.
    ``binary`` and ``model_path`` given as ``str`` become :class:`Path`; a pure path (the
    form of another machine, ``PureWindowsPath``) is kept as it is, for remote launches.
    """

    binary: PurePath
    model_path: PurePath
    args: tuple[str, ...]
    port: int = 0
    host: str = "127.0.0.1"
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    log_file: Path | None = None
    label: str = ""
    ring_lines: int = 200
    alias: str = ""
    keep_env: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists and str paths from callers, store the canonical immutable forms.
        for name in ("binary", "model_path"):
            value = getattr(self, name)
            if not isinstance(value, PurePath):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "keep_env", tuple(self.keep_env))
        if self.log_file is not None:
            object.__setattr__(self, "log_file", Path(self.log_file))
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"sidecar port must be within 1-65535, got {self.port}")
        bad = [n for n in (*self.env, *self.keep_env) if not ENV_NAME.match(n)]
        if bad:
            raise ConfigError(f"invalid environment variable name: {bad[0]!r}")
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
