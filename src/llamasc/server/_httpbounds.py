"""Bounds on what one client connection may cost, enforced in uvicorn's httptools protocol.

uvicorn has no header read timeout, no header size or count limit and no connection cap
that answers anything but plain text; a client sending one byte every half second holds a
connection forever and a 256 MB header line is buffered whole. Here, per connection:

* **header timeout** (default 10 s): a request's head must arrive in full within it,
  counted from the connection's start or the request's first byte (408, or a silent close
  for a connection that never sent anything);
* **body timeout** (default 30 s): the body may not pause longer than that between two
  reads (408);
* **header size and count** (64 KiB, 100 headers): counted as bytes arrive, so a huge
  header is refused after at most one read past the limit, not buffered whole (431);
* **connection limit** (from the open-file limit, see :func:`default_max_connections`):
  past it a new connection gets a 503 and is closed at once, so the daemon never runs out
  of descriptors (children's pipes and upstream sockets need some too);
* every protocol error llhttp finds (bad chunking, Content-Length with Transfer-Encoding,
  unknown methods, junk) is answered with the OpenAI-shaped JSON envelope, not uvicorn's
  ``text/plain`` "Invalid HTTP request received.".

Each bound hit is logged (a warning, at most one per kind every 10 s with a count).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools

from llamasc.errors import (
    HeadersTooLargeError,
    LlamascError,
    RequestError,
    RequestTimeoutError,
    TooManyConnectionsError,
)
from llamasc.server._httpproto import CoalescingHttpToolsProtocol
from llamasc.server.envelope import error_bytes, error_headers

log = logging.getLogger(__name__)

# Descriptors kept for everything but client sockets: children's pipes, logs, the state file.
FD_RESERVE = 64
_LOG_EVERY = 10.0


@dataclass(frozen=True)
class HttpBounds:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_connections: int = 1024


def default_max_connections(soft_limit: int | None = None) -> int:
    """Half of what the open-file limit leaves after :data:`FD_RESERVE`: a proxied request
    holds two descriptors (the client's socket and one to its llama-server)."""
    if soft_limit is None:
        try:
            import resource

            soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):  # Windows: no RLIMIT_NOFILE
            return 1024
        if soft_limit == resource.RLIM_INFINITY:
            return 8192
    return max(16, (soft_limit - FD_RESERVE) // 2)


class _Warner:
    """A warning per kind of bound at most every :data:`_LOG_EVERY` seconds, with a count."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._hidden: dict[str, int] = {}

    def __call__(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -_LOG_EVERY) < _LOG_EVERY:
            self._hidden[kind] = self._hidden.get(kind, 0) + 1
            return
        hidden = self._hidden.pop(kind, 0)
        self._last[kind] = now
        more = f" ({hidden} more since the last such line)" if hidden else ""
        log.warning(message + more, *args)


warn = _Warner()


def response_bytes(err: LlamascError) -> bytes:
    """A whole HTTP/1.1 answer carrying ``err``'s envelope, closing the connection."""
    body = error_bytes(err)
    head = [b"HTTP/1.1 %d %s\r\n" % (err.http_status, _reason(err.http_status))]
    head += [name + b": " + value + b"\r\n" for name, value in error_headers(err, len(body))]
    head.append(b"connection: close\r\n\r\n")
    return b"".join(head) + body


def _reason(status: int) -> bytes:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class BoundedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """The coalescing httptools protocol with :class:`HttpBounds` enforced."""

    bounds: ClassVar[HttpBounds] = HttpBounds()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_raw = 0  # bytes received since this request's head began
        self._head_bytes = 0  # url, names and values parsed so far
        self._n_headers = 0
        self._got_any = False
        self._in_body = False
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._refusal: LlamascError | None = None

    @classmethod
    def with_bounds(cls, bounds: HttpBounds) -> type[BoundedHttpToolsProtocol]:
        return type("BoundedHttpToolsProtocol", (cls,), {"bounds": bounds})

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.bounds.max_connections:
            warn("connections", "connection limit of %d reached: refusing new connections "
                 "with 503 (raise it with --max-connections and the open-file limit)",
                 self.bounds.max_connections)  # fmt: skip
            self._refuse(
                TooManyConnectionsError(
                    f"too many open connections (limit {self.bounds.max_connections}); retry later",
                    retry_after=1,
                )
            )
            return
        self._arm(self.bounds.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._refusal is not None:
            return
        self._got_any = True
        self._last_data = self.loop.time()
        if self._in_head:
            self._head_raw += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            if self._refusal is None:
                reason = str(exc).strip() or type(exc).__name__
                warn("protocol", "invalid HTTP request from %s: %s", self._peer(), reason)
                self._refusal = RequestError(f"invalid HTTP request: {reason}")
            self._refuse(self._refusal)
            return
        if self._in_head and self._head_raw > self.bounds.max_header_bytes:
            self._too_large(f"request headers over {self.bounds.max_header_bytes} bytes")

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_raw = self._head_bytes = self._n_headers = 0
        self._arm(self.bounds.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._n_headers += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._n_headers > self.bounds.max_headers:
            self._too_large(f"more than {self.bounds.max_headers} request headers")
            raise _Refused
        if self._head_bytes > self.bounds.max_header_bytes:
            self._too_large(f"request headers over {self.bounds.max_header_bytes} bytes")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()
        if not self.parser.should_upgrade():
            self._in_body = True
            self._arm(self.bounds.body_timeout)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm()
        super().on_message_complete()

    # -- timers ----------------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing() or self._refusal is not None:
            return
        b = self.bounds
        if self._in_head:
            if not self._got_any or self._head_raw == 0:  # an idle connection: just close it
                log.debug("closing %s: no request within %g s", self._peer(), b.header_timeout)
                self.transport.close()
                return
            warn("header_timeout", "%s did not send its request headers within %g s",
                 self._peer(), b.header_timeout)  # fmt: skip
            self._refuse(
                RequestTimeoutError(f"request headers not received within {b.header_timeout:g} s")
            )
        elif self._in_body:
            idle = self.loop.time() - self._last_data
            if idle < b.body_timeout or self.flow.read_paused:  # reading paused: our wait
                self._arm(max(0.05, b.body_timeout - idle))
                return
            warn("body_timeout", "%s paused its request body for over %g s",
                 self._peer(), b.body_timeout)  # fmt: skip
            self._refuse(RequestTimeoutError(f"request body paused for over {b.body_timeout:g} s"))

    # -- refusing --------------------------------------------------------------------------

    def _too_large(self, what: str) -> None:
        if self._refusal is None:
            warn("headers", "%s sent %s: refused with 431", self._peer(), what)
            self._refuse(HeadersTooLargeError(f"{what} (the daemon's limit)"))

    def _refuse(self, err: LlamascError) -> None:
        """Answer ``err`` unless an answer already started, and close the connection."""
        self._refusal = self._refusal or err
        self._disarm()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            transport.write(response_bytes(self._refusal))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's answer, if any, goes nowhere
            cycle.message_event.set()
        transport.close()

    def send_400_response(self, msg: str) -> None:  # uvicorn's text/plain path
        self._refuse(RequestError(f"invalid HTTP request: {msg}"))

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a refused request."""


__all__ = ["BoundedHttpToolsProtocol", "HttpBounds", "default_max_connections", "response_bytes"]
