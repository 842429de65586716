"""``/upstream/{model}/{path}``: llama-swap's raw pass-through to a model's own server.

Any method, any path of that llama-server (its web UI, ``/slots``, ``/props``...), loading
the model if it is not running, streamed back as it arrives. ``{model}`` is an id or alias,
which may itself contain slashes: the longest one that prefixes the path wins.
``X-Agent-Flags`` picks the sidecar as on the inference routes; a client that disconnects
stops the upstream request (:meth:`~llamasc.server.relay.Proxy.pass_through`).
"""

from __future__ import annotations

import logging

from starlette.types import Receive, Scope, Send

from llamasc.errors import AuthError, LlamascError, NotFoundError, ShuttingDownError
from llamasc.server._request import header_text, read_body
from llamasc.server.envelope import send_error
from llamasc.server.relay import AUTH_MESSAGE, Proxy
from llamasc.server.state import DaemonState

log = logging.getLogger(__name__)

PREFIX = "/upstream/"


def split_model(rest: str, names: list[str]) -> tuple[str, str] | None:
    """``("org/model", "v1/models")`` from ``"org/model/v1/models"``: the longest name."""
    for name in sorted(names, key=len, reverse=True):
        if rest == name or rest.startswith(name + "/"):
            return name, rest[len(name) + 1 :]
    return None


class Passthrough:
    def __init__(self, state: DaemonState, proxy: Proxy) -> None:
        self.state = state
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        st = self.state
        headers = dict(scope["headers"])
        if not st.authorized(headers.get(b"authorization"), headers.get(b"x-api-key")):
            await send_error(send, AuthError(AUTH_MESSAGE))
            return
        if st.draining:
            await send_error(send, ShuttingDownError("llamasc is shutting down"))
            return
        try:
            found = split_model(
                scope["path"][len(PREFIX) :], [*st.catalog.ids(), *st.catalog.aliases]
            )
            if found is None:
                known = ", ".join(st.catalog.ids()[:20]) or "none"
                raise NotFoundError(f"/upstream/MODEL/PATH: no such model (known: {known})")
            model, sub = found
            flags_h = headers.get(b"x-agent-flags")
            flags = st.gate.canonical(header_text(flags_h, "X-Agent-Flags")) if flags_h else ()
            body = await read_body(receive, st.body_limit, headers.get(b"content-length"))
        except LlamascError as exc:
            await send_error(send, exc)
            return
        method = scope["method"].encode()
        target = ("/" + sub).encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        await self.proxy.pass_through(
            receive, send, model, flags,
            method=method, target=target, body=body, headers=scope["headers"],
        )  # fmt: skip


__all__ = ["PREFIX", "Passthrough", "split_model"]
