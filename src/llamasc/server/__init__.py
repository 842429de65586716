"""The llamasc daemon: one OpenAI-compatible endpoint over a pool of llama-server children.

- :func:`create_app` builds the ASGI app over a pool (injectable for tests);
- :func:`run` builds everything from :class:`~llamasc.config.settings.Settings` and serves it.

Routes: the inference POSTs (``/v1/chat/completions``, ``/v1/completions``, ``/completion``,
``/v1/embeddings``, ``/v1/rerank`` and their aliases) are relayed to the sidecar picked by the
model (``X-Model-Id`` header, else the body's ``model``) and the ``X-Agent-Flags`` header;
``GET /health``, ``GET /v1/models``, ``GET /sidecars``, ``GET /sidecars/{hash}/logs``,
``DELETE /sidecars/{hash}``, ``DELETE /sidecars?model=ID|all=1`` manage the daemon. Every error
is an OpenAI-shaped envelope with a ``source`` of ``"llamasc"`` or ``"upstream"``.
"""

from llamasc.server.app import LlamascApp, create_app
from llamasc.server.daemon import Daemon, ServeInfo, run
from llamasc.server.state import LlamaServerInfo

__all__ = ["Daemon", "LlamaServerInfo", "LlamascApp", "ServeInfo", "create_app", "run"]
