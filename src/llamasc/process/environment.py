"""The environment a llama-server child gets: the daemon's, minus what would steer it.

llama-server reads settings from three places, in order: config files, environment
variables, the command line. llamasc decides a child's settings on the command line
alone, so the other two are neutralised here:

* every ``LLAMA_ARG_*`` variable (each maps to a flag), the ``LLAMA_SERVER_*`` and
  ``AIP_*`` families (``LLAMA_SERVER_ROUTER_PORT`` makes the child exit on stdin EOF,
  ``AIP_MODE`` + ``AIP_HTTP_PORT`` override ``--port``), secrets and download endpoints
  are removed;
* ``XDG_CONFIG_HOME`` points at an empty llamasc-owned directory, so the user's
  ``~/.config/llama.cpp/config.ini`` is not applied. ``/etc/llama.cpp/config.ini`` is read
  first by every llama-server and nothing can turn that off: if it exists, we warn.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Collection, Mapping
from pathlib import Path

from llamasc.process.spec import LaunchSpec

log = logging.getLogger(__name__)

SCRUBBED_PREFIXES = ("LLAMA_ARG_", "LLAMA_SERVER_", "AIP_")
SCRUBBED_NAMES = frozenset(
    {
        "LLAMA_API_KEY",
        "HF_TOKEN",
        "HF_ENDPOINT",
        "MODEL_ENDPOINT",
        "LLAMA_CACHE",
        "MTMD_BACKEND_DEVICE",
        "AIP_MODE",
        "AIP_HTTP_PORT",
        "LLAMA_SERVER_ROUTER_PORT",
        "LLAMA_SERVER_CHILD_MODE",
        "LLAMA_SERVER_DEBUG_FAKE_TIMING",
        "LLAMA_SERVER_SLOTS_DEBUG",
        "LLAMA_APP_CMD",
        "LLAMA_MEDIA_MARKER",
        "LLAMA_TRACE",
        # our own secret: a child has no business knowing the daemon's API key
        "LLAMASC_API_KEY",
    }
)
SYSTEM_CONFIG = Path("/etc/llama.cpp/config.ini")

_warned_system_config = False


def is_scrubbed(name: str) -> bool:
    """True if a child must not inherit the variable ``name``."""
    upper = name.upper()  # Windows variable names are case-insensitive
    return upper in SCRUBBED_NAMES or upper.startswith(SCRUBBED_PREFIXES)


def llamasc_home(env: Mapping[str, str] | None = None) -> Path:
    """llamasc's per-user state directory: ``LLAMASC_HOME`` or the platform's state dir."""
    env = os.environ if env is None else env
    if env.get("LLAMASC_HOME"):
        return Path(env["LLAMASC_HOME"])
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "llamasc"
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llamasc"


def empty_config_home(home: Path | None = None) -> Path:
    """An empty directory for the child's ``XDG_CONFIG_HOME``; created if missing.

    It lives in the user's own llamasc directory, not in a shared temp directory, so
    another local user cannot plant a ``llama.cpp/config.ini`` in it.
    """
    path = (home if home is not None else llamasc_home()) / "empty-config"
    path.mkdir(parents=True, exist_ok=True)
    planted = path / "llama.cpp" / "config.ini"
    if planted.exists():
        log.warning("%s exists and will be read by every llama-server child; remove it", planted)
    return path


def warn_system_config(path: Path = SYSTEM_CONFIG) -> bool:
    """Warn (once per process) when a system-wide llama.cpp config applies to every child."""
    global _warned_system_config
    if sys.platform == "win32" or not path.exists():
        return False
    if not _warned_system_config:
        _warned_system_config = True
        log.warning(
            "%s exists: llama-server applies it to every child before its flags and it "
            "cannot be turned off; settings it holds may change what llamasc runs",
            path,
        )
    return True


def child_env(
    spec: LaunchSpec,
    base: Mapping[str, str] | None = None,
    *,
    config_home: Path | None = None,
) -> dict[str, str]:
    """The child's environment: ``base`` (default: ours) scrubbed but for ``spec.keep_env``,
    then ``spec.env`` added.

    ``config_home`` is the empty ``XDG_CONFIG_HOME``; by default
    :func:`empty_config_home` under :func:`llamasc_home`.
    """
    return scrubbed_env(spec.env, base, keep=spec.keep_env, config_home=config_home)


def scrubbed_env(
    extra: Mapping[str, str],
    base: Mapping[str, str] | None = None,
    *,
    keep: Collection[str] = (),
    config_home: Path | None = None,
) -> dict[str, str]:
    """``base`` (default: ours) without what would steer a llama-server, then ``extra``.

    ``keep`` names variables a user passes on purpose (``llamasc bench --keep-env VAR``).
    This is the one rule for every local child, the daemon's and bench's alike; the
    remote launchers apply the same names (:data:`SCRUBBED_PREFIXES`, :data:`SCRUBBED_NAMES`)
    in their start scripts.
    """
    source = os.environ if base is None else base
    kept = {name.upper() for name in keep}
    env = {k: v for k, v in source.items() if k.upper() in kept or not is_scrubbed(k)}
    env["XDG_CONFIG_HOME"] = str(config_home if config_home is not None else empty_config_home())
    env["NO_COLOR"] = "1"
    env.update(extra)  # per-model settings are the operator's, so they win
    return env
