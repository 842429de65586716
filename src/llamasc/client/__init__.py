"""A small async OpenAI-compatible client shared by bench and eval.

It talks to a llamasc daemon or to any OpenAI-compatible endpoint (llama-server itself, the
router, llama-swap). Against a llamasc daemon it can carry per-request llama-server flags in
the ``X-Agent-Flags`` header.
"""

from llamasc.client._client import ChatClient, normalize_base_url
from llamasc.client._completion import Completion
from llamasc.client._sse import iter_sse_data
from llamasc.client._stream import TextStream
from llamasc.client._timings import Timings

__all__ = [
    "ChatClient",
    "Completion",
    "TextStream",
    "Timings",
    "iter_sse_data",
    "normalize_base_url",
]
