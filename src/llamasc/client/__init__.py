"""A small async OpenAI-compatible client shared by bench and eval, and the daemon's admin
API for the CLI (:mod:`llamasc.client.daemon`).

It talks to a llamasc daemon or to any OpenAI-compatible endpoint (llama-server itself, the
router, llama-swap). Against a llamasc daemon it can carry per-request llama-server flags in
the ``X-Agent-Flags`` header.
"""

from typing import TYPE_CHECKING, Any

from llamasc.client.daemon import DEFAULT_DAEMON_URL, daemon_request

if TYPE_CHECKING:
    from llamasc.client._client import ChatClient, normalize_base_url
    from llamasc.client._completion import Completion
    from llamasc.client._sse import iter_sse_data
    from llamasc.client._stream import TextStream
    from llamasc.client._timings import Timings

# httpx is imported on first use of a name below, so the CLI (which reaches the daemon
# through :mod:`llamasc.client.daemon`) keeps ``--help`` free of heavy imports.
_LAZY = {
    "ChatClient": "_client",
    "normalize_base_url": "_client",
    "Completion": "_completion",
    "iter_sse_data": "_sse",
    "TextStream": "_stream",
    "Timings": "_timings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llamasc.client' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"llamasc.client.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_DAEMON_URL",
    "ChatClient",
    "Completion",
    "TextStream",
    "Timings",
    "daemon_request",
    "iter_sse_data",
    "normalize_base_url",
]
