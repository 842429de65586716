"""Every llama-server route (see :mod:`llamasc.server.routes`): a lean raw-ASGI reverse proxy
to the sidecars.

A request goes to the sidecar of its model and ``X-Agent-Flags`` (started if needed, as
llama.cpp's router does, unless its route may not start one), plus the flag its route implies
(``--embedding`` for embeddings). ``GET`` routes take the model from ``?model=``, which is not
forwarded.

This is the hot path, so it avoids every per-request cost it can: no framework routing, the
body is read once and forwarded as the original bytes, the model is found without parsing the
body when ``X-Model-Id`` is given, accepted ``X-Agent-Flags`` values are cached, connections to
each sidecar are kept alive, and the response is relayed chunk by chunk as it arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

from llamasc.errors import (
    AuthError,
    HeadersTooLargeError,
    LlamascError,
    RpcWorkerError,
    ShuttingDownError,
    UpstreamError,
    UpstreamTimeoutError,
)
from llamasc.pool.upstream_conn import (
    Connection,
    UpstreamConnectError,
    UpstreamIOError,
    UpstreamTimeout,
)
from llamasc.process.rpc import check_workers, rpc_workers
from llamasc.server._request import header_text, read_body
from llamasc.server._types import LeaseLike
from llamasc.server.dispatch import (
    check_slot_action,
    pick_model,
    running_flags,
    strip_model,
    with_mode,
)
from llamasc.server.envelope import MethodNotAllowedError, send_error, sse_error_event
from llamasc.server.guard import INTERNAL_MESSAGE
from llamasc.server.loading import LoadingStream, wants_loading_state
from llamasc.server.messages import MESSAGES_PATH, MessageStart
from llamasc.server.routes import SLOT_ACTION, Route
from llamasc.server.state import DaemonState

log = logging.getLogger(__name__)

RPC_PROBE_TIMEOUT = 1.0  # per worker, only after a sidecar spread over workers failed

# Not forwarded upstream: hop-by-hop headers, ours (auth, routing), and the ones we set.
_DROP_REQUEST = frozenset(
    {
        b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te",
        b"trailer", b"upgrade", b"proxy-authorization", b"proxy-connection", b"expect",
        b"authorization", b"x-api-key", b"x-agent-flags", b"x-model-id",
    }
)  # fmt: skip
# Not relayed back: hop-by-hop, and what uvicorn sets itself (server, date).
_DROP_RESPONSE = frozenset(
    {
        b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
        b"proxy-authenticate", b"server", b"date",
    }
)  # fmt: skip
_SSE = b"text/event-stream"
_TIMINGS = b'"timings":'
_TAIL = 16384
_DECODER = json.JSONDecoder()  # one for all: building one costs ~8 µs a request
# Most answers (a short completion, an embedding) are done before this: they never pay for a
# disconnect watcher. Longer ones get one, so a client that leaves stops its generation.
WATCH_AFTER = 0.1


# cpp-httplib (llama-server) answers an empty 400 to a header line longer than 8 KiB.
UPSTREAM_HEADER_LINE = 8192 - 4

AUTH_MESSAGE = "missing or invalid API key (send Authorization: Bearer <key> or x-api-key: <key>)"


def forwarded_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A client's headers as sent upstream: without hop-by-hop ones and ours."""
    return [(k, v) for k, v in headers if k not in _DROP_REQUEST]


class _AbortConnection(Exception):
    """The upstream broke in the middle of a non-stream body: the client's connection must be
    cut (a clean end would pass a truncated body off as complete)."""


class _Call:
    """One proxied request's flags, shared with its disconnect watcher."""

    __slots__ = ("client_gone", "done", "receive", "started", "task", "watcher")

    def __init__(self, task: asyncio.Task[Any] | None, receive: Receive) -> None:
        self.task = task
        self.receive = receive
        self.watcher: asyncio.Task[None] | None = None
        self.started = False  # response headers sent: errors can no longer be an envelope
        self.done = False  # the last body message is on its way: a disconnect is normal
        self.client_gone = False

    def watch(self) -> None:
        """Start watching for the client's disconnect (a timer calls this)."""
        if not self.done:
            self.watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Cancel the request when its client disconnects, so llama-server stops generating."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
        if not self.done and self.task is not None:
            self.client_gone = True
            self.task.cancel()


def find_timings(before: bytes, last: bytes) -> dict[str, Any] | None:
    """llama-server's ``timings`` object from the end of a response, parsing only the tail."""
    blob = before[-_TAIL:] + last[-_TAIL:] if len(last) < _TAIL else last[-_TAIL:]
    at = len(blob)
    for _ in range(4):  # the last key named "timings" whose value is an object (a key inside
        at = blob.rfind(_TIMINGS, 0, at)  # timings, or a generated text, may say it too)
        if at < 0:
            return None
        try:
            text = blob[at + len(_TIMINGS) :].decode("utf-8", "replace").lstrip()
            value, _ = _DECODER.raw_decode(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


class Proxy:
    """ASGI app for the relayed routes; ``routes`` are the routes at the request's path."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, routes: Mapping[str, Route]
    ) -> None:
        st = self.state
        route = routes.get(scope["method"])
        if route is None:
            allow = ", ".join(routes)
            await send_error(
                send, MethodNotAllowedError(f"{scope['path']} accepts only {allow}", allow=allow)
            )
            return
        model_h = flags_h = auth_h = key_h = length_h = None
        fwd: list[tuple[bytes, bytes]] = []
        too_long: bytes | None = None
        for name, value in scope["headers"]:
            if name not in _DROP_REQUEST:
                fwd.append((name, value))
                if len(name) + len(value) > UPSTREAM_HEADER_LINE:
                    too_long = name
            elif name == b"x-model-id":
                model_h = value
            elif name == b"x-agent-flags":
                flags_h = value
            elif name == b"authorization":
                auth_h = value
            elif name == b"x-api-key":
                key_h = value
            elif name == b"content-length":
                length_h = value
        if not st.authorized(auth_h, key_h):
            await send_error(send, AuthError(AUTH_MESSAGE))
            return
        if st.draining:
            await send_error(send, ShuttingDownError("llamasc is shutting down"))
            return
        if too_long is not None:
            what = too_long[:64].decode("latin-1")
            await send_error(send, HeadersTooLargeError(
                f"header {what!r} is longer than the {UPSTREAM_HEADER_LINE + 4} bytes a "
                "llama-server header line may have"))  # fmt: skip
            return
        query: bytes = scope["query_string"]
        try:
            body = await read_body(receive, st.body_limit, length_h)
            model = header_text(model_h, "X-Model-Id") if model_h is not None else ""
            if not model:
                model = pick_model(route, st, body, query)
            if st.filters and route.method == "POST":  # llama-swap filters, for models with one
                body = st.filters.apply(model, body)
            flags = st.gate.canonical(header_text(flags_h, "X-Agent-Flags")) if flags_h else ()
            peer = st.peers.route(model) if st.peers and model not in st.catalog else None
            if peer is not None:  # a model on another host (llama-swap's peers)
                await st.peers.forward(
                    peer, send, method=route.method, path=scope["path"],
                    query=scope["query_string"], headers=fwd, body=body, requested=model,
                )  # fmt: skip
                return
            opaque = st.catalog.is_opaque(model)  # relayed as-is: no mode flags either
            if route.mode is not None and model not in st.no_modes and not opaque:
                flags = with_mode(flags, route.mode, st.pooling.get(model))
            if not route.starts:
                if route.path == SLOT_ACTION:
                    check_slot_action(body)
                flags = running_flags(st, model, flags)
        except LlamascError as exc:
            await send_error(send, exc)
            return
        target: bytes = scope.get("raw_path") or scope["path"].encode()
        if query:
            query = strip_model(query) if route.model == "query" else query
            if query:
                target += b"?" + query
        rec = st.observer.begin(scope, model, flags, send) if st.observer else None
        if rec is not None:
            send = rec.send
        task = asyncio.current_task()
        call = _Call(task, receive)
        loop = asyncio.get_running_loop()
        if st.loop is None:
            st.loop = loop
        timer = loop.call_later(WATCH_AFTER, call.watch)
        if task is not None:
            st.waiters.add(task)  # until a sidecar is ours: draining answers it 503 at once
        waits_for = wants_loading_state(st.pool, route.path, model, flags, body)
        loading = None if waits_for is None else LoadingStream(waits_for, model, send)
        try:
            if loading is not None:
                await loading.start()
                call.started = True
                send = loading.send
            async with st.pool.lease(model, flags) as lease:
                st.waiters.discard(task)
                if loading is not None:
                    await loading.ready()
                if rec is not None:
                    rec.leased(lease)
                await self._forward(
                    send, lease, method=route.method.encode(), target=target, body=body, fwd=fwd,
                    call=call, opens=model if route.path == MESSAGES_PATH else None,
                )  # fmt: skip
        except asyncio.CancelledError:
            if call.client_gone and call.task is not None:
                call.task.uncancel()
                log.debug("client left %s; upstream request cancelled", scope["path"])
                return
            raise  # shutting down: the Guard answers 503 if nothing was sent yet
        except LlamascError as exc:
            if loading is not None and not call.done:  # the status is sent: an error event
                call.done = True
                await loading.failed(exc)
                return
            if call.started:
                raise
            await send_error(send, exc)
        except Exception as exc:
            if call.started or isinstance(exc, _AbortConnection):
                raise
            log.exception("proxying %s failed", scope["path"])
            await send_error(send, LlamascError(INTERNAL_MESSAGE))
        finally:
            st.waiters.discard(task)
            call.done = True
            timer.cancel()
            if call.watcher is not None:
                call.watcher.cancel()
            if rec is not None:
                rec.finish(call.client_gone)

    async def pass_through(
        self,
        receive: Receive,
        send: Send,
        model: str,
        flags: tuple[str, ...],
        *,
        method: bytes,
        target: bytes,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Lease a sidecar of ``model`` and relay one raw request to it (``/upstream``).

        ``headers`` are the client's (those that are ours or hop-by-hop are dropped here).
        As on the inference routes, the response streams as it arrives and a client that
        disconnects stops the upstream request (and the wait for a start).
        """
        fwd = forwarded_headers(headers)
        call = _Call(asyncio.current_task(), receive)
        timer = asyncio.get_running_loop().call_later(WATCH_AFTER, call.watch)
        try:
            async with self.state.pool.lease(model, flags) as lease:
                await self._forward(
                    send, lease, method=method, target=target, body=body, fwd=fwd, call=call
                )
        except asyncio.CancelledError:
            if call.client_gone and call.task is not None:
                call.task.uncancel()
                log.debug("client left /upstream/%s; upstream request cancelled", model)
                return
            raise
        except LlamascError as exc:
            if call.started:
                raise
            await send_error(send, exc)
        finally:
            call.done = True
            timer.cancel()
            if call.watcher is not None:
                call.watcher.cancel()

    async def _forward(
        self,
        send: Send,
        lease: LeaseLike,
        *,
        method: bytes,
        target: bytes,
        body: bytes,
        fwd: list[tuple[bytes, bytes]],
        call: _Call,
        opens: str | None = None,
    ) -> None:
        """Send one request to the lease's llama-server and relay its answer; ``opens``: the
        model of an Anthropic Messages request (its stream must open with ``message_start``,
        see :mod:`llamasc.server.messages`)."""
        up = lease.upstream  # the sidecar's own keep-alive connections
        fwd.append((b"content-length", b"%d" % len(body)))
        where = f"llama-server for {lease.model_id!r} on port {lease.port}"
        try:
            conn = await up.send(up.head(method, target, fwd) + body)
        except UpstreamTimeout as exc:
            _report_timeout(lease)
            raise await _cause(lease, where, UpstreamTimeoutError(f"{where} {exc}")) from None
        except UpstreamConnectError as exc:
            err = UpstreamError(f"{where} failed before answering: {exc}")
            raise await _cause(lease, where, err) from None
        except UpstreamIOError as exc:
            err = UpstreamError(f"{where} closed the connection without answering: {exc}")
            raise await _cause(lease, where, err) from None
        try:
            await self._relay(conn, send, where, lease, call, opens=opens)
        finally:
            conn.release()

    async def _relay(
        self,
        conn: Connection,
        send: Send,
        where: str,
        lease: LeaseLike,
        call: _Call,
        *,
        opens: str | None,
    ) -> None:
        headers: list[tuple[bytes, bytes]] = []
        sse = False
        for raw_name, value in conn.headers:
            name = raw_name.lower()
            if name in _DROP_RESPONSE or name.startswith(b"access-control-"):
                continue  # llama-server's CORS is not ours: see llamasc.server.cors
            if name == b"content-type" and value.startswith(_SSE):
                sse = True
            headers.append((name, value))
        if sse:
            headers.append((b"x-accel-buffering", b"no"))  # tell reverse proxies not to buffer
        await send({"type": "http.response.start", "status": conn.status, "headers": headers})
        call.started = True
        before = b""
        last = b""
        start = MessageStart(opens) if sse and opens is not None and conn.status == 200 else None
        try:
            if sse:
                while chunk := await conn.read():
                    out = chunk if start is None else start.feed(chunk)
                    if out:
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                    before, last = last, chunk
                call.done = True
                held = b"" if start is None else start.flush()
                await send({"type": "http.response.body", "body": held, "more_body": False})
            else:
                # One chunk of look-ahead: the usual one-chunk JSON body goes out in one message.
                while chunk := await conn.read():
                    if last:
                        await send({"type": "http.response.body", "body": last, "more_body": True})
                    before, last = last, chunk
                call.done = True
                await send({"type": "http.response.body", "body": last, "more_body": False})
        except UpstreamIOError as exc:
            err: LlamascError
            if isinstance(exc, UpstreamTimeout):
                _report_timeout(lease)
                err = UpstreamTimeoutError(f"{where} {exc}")
            else:
                err = UpstreamError(f"{where} broke off its answer: {exc}")
            err = await _cause(lease, where, err)
            log.warning("%s", err)
            if not sse:
                raise _AbortConnection(str(err)) from None
            call.done = True
            held = b"" if start is None else start.flush()
            body = held + sse_error_event(err)
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        if conn.status == 200 and last:
            timings = find_timings(before, last)
            if timings is not None:
                _record(lease, timings)


async def _cause(lease: LeaseLike, where: str, err: LlamascError) -> LlamascError:
    """``err``, or a 502 naming the RPC worker that went away when the sidecar's model is
    spread over workers and one of them no longer answers (llama-server aborts when it loses
    one mid-request: its broken connection is the symptom, the worker the cause)."""
    sidecar = getattr(lease, "sidecar", None)  # the real pool's leases have it
    workers = rpc_workers(getattr(sidecar, "flags", ()))
    if not workers:
        return err
    try:
        await check_workers(workers, timeout=RPC_PROBE_TIMEOUT)
    except RpcWorkerError as lost:
        return RpcWorkerError(f"{where} failed: {lost}", workers=lost.workers)
    return err


def _report_timeout(lease: LeaseLike) -> None:
    report = getattr(lease, "report_timeout", None)  # the real pool's leases have it
    if report is not None:
        report()


def _record(lease: LeaseLike, timings: dict[str, Any]) -> None:
    try:
        lease.record(timings)
    except Exception as exc:  # bookkeeping must never fail a request that succeeded
        log.debug("could not record timings: %s", exc)


__all__ = ["AUTH_MESSAGE", "Proxy", "find_timings"]
