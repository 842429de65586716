"""llamasc: a pool of llama-server processes behind one OpenAI endpoint.

The library is usable on its own; the ``llamasc`` command is a thin shell over it::

    import llamasc

    with llamasc.load("model.gguf", flags="-c 4096") as model:
        for piece in model.generate_stream("def fib(n):", max_tokens=64):
            print(piece, end="", flush=True)
        print(model.chat("Hi", max_tokens=32).text)

Everything but the errors is imported on first use, so ``import llamasc`` (and
``llamasc --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llamasc._version import __version__
from llamasc.errors import (
    FlagError,
    LlamascError,
    ModelClosedError,
    ReadinessTimeoutError,
    SidecarExitedError,
    SpawnError,
    UpstreamError,
)

if TYPE_CHECKING:
    from llamasc.api import AsyncModel, Model, Stream, aconnect, aload, connect, load
    from llamasc.client import Completion, TextStream, Timings
    from llamasc.flags import FlagPolicy

# name -> the module that defines it, imported when the name is first used
_LAZY: dict[str, str] = {
    "AsyncModel": "llamasc.api",
    "Model": "llamasc.api",
    "Stream": "llamasc.api",
    "aconnect": "llamasc.api",
    "aload": "llamasc.api",
    "connect": "llamasc.api",
    "load": "llamasc.api",
    "Completion": "llamasc.client",
    "TextStream": "llamasc.client",
    "Timings": "llamasc.client",
    "FlagPolicy": "llamasc.flags",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llamasc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AsyncModel",
    "Completion",
    "FlagError",
    "FlagPolicy",
    "LlamascError",
    "Model",
    "ModelClosedError",
    "ReadinessTimeoutError",
    "SidecarExitedError",
    "SpawnError",
    "Stream",
    "TextStream",
    "Timings",
    "UpstreamError",
    "__version__",
    "aconnect",
    "aload",
    "connect",
    "load",
]
