"""What is behind an endpoint: a llamasc daemon (flags travel in X-Agent-Flags) or a plain
OpenAI-compatible server (flags are only a label), which models, and how many slots."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from llamasc.client import ChatClient, normalize_base_url
from llamasc.client.daemon import DEFAULT_DAEMON_URL
from llamasc.errors import DaemonUnreachableError, LlamascError, UnknownModelError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = DEFAULT_DAEMON_URL


def default_endpoint() -> str:
    """``$LLAMASC_DAEMON`` or the local daemon's address."""
    return os.environ.get("LLAMASC_DAEMON") or DEFAULT_ENDPOINT


@dataclass(frozen=True)
class EndpointInfo:
    base_url: str
    is_llamasc: bool
    models: tuple[str, ...]
    total_slots: int | None


def _looks_like_llamasc(body: Any) -> bool:
    # the daemon's /health carries its pool fields; llama-server says only {"status": "ok"}
    return isinstance(body, dict) and "max_sidecars" in body and "llama_server" in body


async def probe(base_url: str, api_key: str | None = None, wait_s: float = 10.0) -> EndpointInfo:
    """Ask /health, /v1/models and (not a daemon) /props. Raises DaemonUnreachableError if
    nothing answers."""
    base = normalize_base_url(base_url)
    async with ChatClient(base, api_key=api_key, timeout=wait_s) as client:
        try:
            status, body = await client.health_status()
        except DaemonUnreachableError as exc:
            raise DaemonUnreachableError(
                f"{exc}; start 'llamasc serve' or pass --endpoint URL of an "
                "OpenAI-compatible server"
            ) from None
        if status == 401:
            raise LlamascError(f"{base} refused the API key (HTTP 401); pass --api-key")
        models: tuple[str, ...] = ()
        with contextlib.suppress(LlamascError, ValueError, AttributeError):
            models = tuple(await client.models())
        slots: int | None = None
        is_llamasc = _looks_like_llamasc(body)
        if not is_llamasc:  # a daemon's /props is per sidecar: asked once model and flags are known
            slots = await server_slots(client)
    return EndpointInfo(base, is_llamasc, models, slots)


async def server_slots(client: ChatClient, model: str | None = None) -> int | None:
    """``total_slots`` from the server's /props (through a daemon: of ``model``'s sidecar for
    the client's flags), or None if it does not say."""
    try:
        value = (await client.props(model)).get("total_slots")
    except LlamascError as exc:
        log.debug("GET /props (model %s) failed: %s", model, exc)
        return None
    return value if isinstance(value, int) and value > 0 else None


def resolve_model(info: EndpointInfo, model: str | None) -> str:
    """The model id to ask for: the given one, or the endpoint's only model."""
    if model:
        return model
    if len(info.models) == 1:
        return info.models[0]
    if not info.models:
        return ""
    raise UnknownModelError(
        f"{info.base_url} serves {len(info.models)} models; pick one with --model "
        f"({', '.join(info.models[:8])}{', ...' if len(info.models) > 8 else ''})"
    )


_HTTP_STATUS = re.compile(r"HTTP (\d{3})")


def http_status(error: Exception) -> int | None:
    """The HTTP status in a client error's message, if it came from an HTTP answer."""
    match = _HTTP_STATUS.search(str(error))
    return int(match.group(1)) if match else None


__all__ = [
    "DEFAULT_ENDPOINT",
    "EndpointInfo",
    "default_endpoint",
    "http_status",
    "probe",
    "resolve_model",
    "server_slots",
]
