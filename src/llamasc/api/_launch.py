"""``aload`` and ``aconnect``: what to run (model, binary, flags, port) and starting it."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llamasc.api._async import AsyncModel
from llamasc.client import ChatClient
from llamasc.config import discover_models, find_llama_server
from llamasc.errors import ConfigError
from llamasc.flags import FlagPolicy, validate_flags
from llamasc.process import LaunchSpec, LlamaServer
from llamasc.process.ports import pick_free_port, retry_lost_port

log = logging.getLogger(__name__)

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
    spec = LaunchSpec(binary, model_path, args, host="127.0.0.1", env=env, label=name, alias=name)

    async def start(candidate: int) -> LlamaServer:
        started = dataclasses.replace(spec, port=candidate)
        return await LlamaServer.start(started, ready_timeout=ready_timeout)

    if port is not None:  # the caller's choice: no other port will do
        return await start(port)
    return await retry_lost_port(start, pick_free_port(), lambda _lost: pick_free_port())


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
