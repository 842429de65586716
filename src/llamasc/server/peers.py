"""Peers: models served by other hosts (another llamasc, a llama-swap, any OpenAI-compatible
server), forwarded there with streaming, as llama-swap's ``peers`` are.

A peer's model is addressed by its bare name (when exactly one peer lists it) or as
``peer/model``; a local model of the same name wins. The peer's ``api_key`` is sent as
``Authorization: Bearer`` and ``x-api-key`` (the client's own credentials for this daemon
are not). A peer that does not accept the connection within ``connect_timeout`` gets the
client a 502 naming the peer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import Send

from llamasc.config.swapfields import PeerSettings
from llamasc.errors import UpstreamError
from llamasc.server.filters import ModelFilter

log = logging.getLogger(__name__)

_DROP_RESPONSE = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
     b"server", b"date", b"content-length", b"content-encoding"}
)  # fmt: skip


@dataclass(frozen=True)
class Route:
    peer_id: str
    peer: PeerSettings
    model: str  # the name the peer knows it by


class Peers:
    def __init__(self, peers: Mapping[str, PeerSettings]) -> None:
        self._routes: dict[str, Route] = {}
        owners: dict[str, list[str]] = {}
        for pid, p in peers.items():
            for m in p.models:
                self._routes[f"{pid}/{m}"] = Route(pid, p, m)
                owners.setdefault(m, []).append(pid)
        for m, pids in owners.items():
            if len(pids) == 1 and m not in self._routes:
                self._routes[m] = Route(pids[0], peers[pids[0]], m)
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._peers = dict(peers)

    def __bool__(self) -> bool:
        return bool(self._routes)

    def route(self, name: str) -> Route | None:
        return self._routes.get(name)

    def listing(self) -> list[tuple[str, str]]:
        """``(model name, peer id)`` for /v1/models: the qualified names."""
        return [
            (n, r.peer_id)
            for n, r in self._routes.items()
            if "/" in n and n.startswith(r.peer_id + "/")
        ]

    def _client(self, route: Route) -> httpx.AsyncClient:
        client = self._clients.get(route.peer_id)
        if client is None:
            timeout = httpx.Timeout(None, connect=route.peer.connect_timeout)
            client = httpx.AsyncClient(timeout=timeout, trust_env=False)
            self._clients[route.peer_id] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def forward(
        self,
        route: Route,
        send: Send,
        *,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        requested: str,
    ) -> None:
        """Send the request to the peer and relay its answer, chunk by chunk."""
        p = route.peer
        body = self._rewrite(route, requested, body)
        url = p.proxy.rstrip("/") + path + ("?" + query.decode("latin-1") if query else "")
        out = [(k, v) for k, v in headers if k not in (b"x-api-key", b"content-length")]
        if p.api_key:
            key = p.api_key.encode()
            out += [(b"authorization", b"Bearer " + key), (b"x-api-key", key)]
        client = self._client(route)
        request = client.build_request(method, url, headers=out, content=body)
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException:
            raise UpstreamError(
                f"peer {route.peer_id!r} ({p.proxy}) did not answer within {p.connect_timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"peer {route.peer_id!r} ({p.proxy}) is unreachable: {exc or type(exc).__name__}"
            ) from None
        try:
            raw = [
                (k.lower(), v) for k, v in response.headers.raw if k.lower() not in _DROP_RESPONSE
            ]
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                raw.append((b"x-accel-buffering", b"no"))
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": raw}
            )
            try:
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError as exc:
                log.warning("peer %s broke off its answer: %s", route.peer_id, exc)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    @staticmethod
    def _rewrite(route: Route, requested: str, body: bytes) -> bytes:
        """The peer's own name for the model in the body, and the peer's filters."""
        if not body:
            return body
        f = route.peer.filters
        if requested == route.model and not f.active:
            return body
        try:
            data: Any = json.loads(body)
        except ValueError:
            return body
        if not isinstance(data, dict):
            return body
        if "model" in data:
            data["model"] = route.model
        if f.active:
            mf = ModelFilter(f.strip_params, f.set_params, f.set_params_by_id)
            return mf.apply(requested, json.dumps(data).encode())
        return json.dumps(data, separators=(",", ":")).encode()


__all__ = ["Peers", "Route"]
