"""``aload`` and ``aconnect``: what to run (model, binary, flags, port) and starting it."""

from __future__ import annotations

import json
import logging
import os
import random
import socket
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from llamasc.api._async import AsyncModel
from llamasc.client import ChatClient
from llamasc.config import discover_models, find_llama_server
from llamasc.errors import ConfigError, SpawnError
from llamasc.flags import FlagPolicy, validate_flags
from llamasc.process import LaunchSpec, LlamaServer

log = logging.getLogger(__name__)

# Below the ephemeral ranges, so our own outgoing connections cannot take the port between
# the check and llama-server's bind (the same range the bench launchers use).
PORT_RANGE = (20000, 32000)
BIND_RETRIES = 2
Flags = str | Sequence[str]


def resolve_model(path_or_id: str | os.PathLike[str]) -> tuple[str, Path, Mapping[str, str]]:
    """(id, GGUF path, model env) for a file path or a configured model id.

    Ids are looked up like the daemon does (``MODEL_DIR_MAP_FILE``, ``LLAMASC_MODELS_DIR``,
    else the demo model ``smollm2-135m``)."""
    text = os.fspath(path_or_id)
    path = Path(text).expanduser()
    if path.is_file():
        return path.stem, path.resolve(), {}
    if path.suffix.lower() == ".gguf" or os.sep in text or "/" in text:
        raise ConfigError(f"model file not found: {path}")
    catalog = discover_models(
        model_map_file=os.environ.get("MODEL_DIR_MAP_FILE") or None,
        models_dir=os.environ.get("LLAMASC_MODELS_DIR") or None,
    )
    entry = catalog.get(text)
    return entry.id, entry.path, entry.env


def operator_args(flags: Flags, policy: FlagPolicy | None) -> tuple[str, ...]:
    """The flags checked as trusted configuration: one FlagError listing every problem."""
    validation = validate_flags(flags if flags else [], policy or FlagPolicy.operator())
    validation.raise_for_problems()
    return validation.canonical


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ports(host: str, fixed: int | None) -> Generator[int, None, None]:
    if fixed is not None:
        yield fixed
        return
    rng = random.Random()
    for _ in range(BIND_RETRIES + 1):
        for _ in range(50):
            port = rng.randrange(*PORT_RANGE)
            if _bindable(host, port):
                break
        yield port


async def start_server(
    binary: Path,
    model_path: Path,
    args: tuple[str, ...],
    *,
    name: str,
    env: Mapping[str, str],
    ready_timeout: float,
    port: int | None,
) -> LlamaServer:
    """Start llama-server on a free loopback port (another one if it lost the port)."""
    host = "127.0.0.1"
    last: SpawnError | None = None
    for candidate in _ports(host, port):
        spec = LaunchSpec(
            binary, model_path, args, port=candidate, host=host, env=env, label=name, alias=name
        )
        try:
            return await LlamaServer.start(spec, ready_timeout=ready_timeout)
        except SpawnError as exc:
            if port is not None or not exc.lost_port:
                raise
            log.warning("llama-server lost port %d to another process; trying another", candidate)
            last = exc
    assert last is not None
    raise last


async def open_local(
    path_or_model_id: str | os.PathLike[str],
    *,
    flags: Flags = "",
    binary: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60.0,
    port: int | None = None,
    policy: FlagPolicy | None = None,
    stop_grace: float = 5.0,
    timeout: float = 600.0,  # noqa: ASYNC109 (the HTTP client's, per request)
) -> AsyncModel:
    """Validate, spawn and wait for a llama-server child; the AsyncModel that owns it."""
    args = operator_args(flags, policy)
    name, model_path, model_env = resolve_model(path_or_model_id)
    exe = find_llama_server(binary, os.environ)
    server = await start_server(
        exe,
        model_path,
        args,
        name=name,
        env={**model_env, **(env or {})},
        ready_timeout=ready_timeout,
        port=port,
    )
    client = ChatClient(server.base_url, timeout=timeout)
    return AsyncModel(client, name=name, model=name, server=server, stop_grace=stop_grace)


def open_remote(
    url: str,
    *,
    model: str | None = None,
    flags: Flags | None = None,
    api_key: str | None = None,
    timeout: float = 600.0,
    **client_kwargs: Any,
) -> AsyncModel:
    """An AsyncModel for an endpoint: a llamasc daemon (``flags`` travel as ``X-Agent-Flags``,
    checked there) or any OpenAI-compatible server."""
    header = flags if isinstance(flags, str) or flags is None else _json_list(flags)
    client = ChatClient(
        url, api_key=api_key, flags=header or None, timeout=timeout, **client_kwargs
    )
    return AsyncModel(client, name=model or client.base_url, model=model)


def _json_list(flags: Sequence[str]) -> str:
    return json.dumps(list(flags))


__all__ = ["Flags", "open_local", "open_remote", "operator_args", "resolve_model"]
