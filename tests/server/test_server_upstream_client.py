"""The relay's own HTTP/1.1 client against scripted servers on 127.0.0.1: keep-alive reuse,
every body framing, stale and dying connections, timeouts and cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from llamasc.pool import upstream as upstream_mod
from llamasc.pool.upstream import Upstream
from llamasc.pool.upstream_conn import (
    Connection,
    Timeouts,
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)

# a broken client tends to hang, not fail: keep that short
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Server:
    """A loopback server running ``handler`` per connection; counts what it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.eofs = 0  # connections the client closed (we saw EOF while waiting to read)
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eofs += 1
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return body

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return Upstream(f"http://127.0.0.1:{port}")

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"".join(extra)
    return head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def request(up: Upstream, body: bytes = b'{"n": 1}') -> bytes:
    return up.head(b"POST", b"/v1/chat/completions", [(b"content-length", b"%d" % len(body))]) + (
        body
    )


async def fetch(up: Upstream, data: bytes) -> bytes:
    """Send one request, read its whole answer, give the connection back."""
    conn = await up.send(data)
    body = await read_all(conn)
    conn.release()
    return body


async def read_all(conn: Connection) -> bytes:
    parts = []
    while chunk := await conn.read():
        parts.append(chunk)
    return b"".join(parts)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def echo_forever(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
    while True:
        body = await s.read_request(r)
        w.write(ok(body))
        await w.drain()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Server, Upstream]]:
    server = Server(echo_forever)
    async with server as up:
        yield server, up
        up.close()


async def test_keepalive_connection_is_reused(echo: tuple[Server, Upstream]) -> None:
    server, up = echo
    for n in range(5):
        conn = await up.send(request(up, b'{"n": %d}' % n))
        assert conn.status == 200
        assert (b"Content-Type", b"application/json") in conn.headers
        assert await read_all(conn) == b'{"n": %d}' % n
        conn.release()
    assert server.connections == 1
    assert len(server.requests) == 5
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"\r\ncontent-length: 8\r\n\r\n" in first


async def test_concurrent_requests_use_separate_connections(echo: tuple[Server, Upstream]) -> None:
    server, up = echo
    a, b = await asyncio.gather(up.send(request(up, b"a")), up.send(request(up, b"b")))
    assert (await read_all(a), await read_all(b)) == (b"a", b"b")
    a.release()
    b.release()
    assert server.connections == 2
    assert await fetch(up, request(up, b"c")) == b"c"  # an idle one is reused
    assert server.connections == 2


async def test_chunked_body_arrives_chunk_by_chunk() -> None:
    go_on = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        w.write(b"Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await w.drain()
        await go_on.wait()
        w.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await w.drain()
        await s.read_request(r)  # still open: the connection was kept alive
        w.write(ok(b"again"))
        await w.drain()
        await r.read()

    server = Server(handler)
    async with server as up:
        conn = await up.send(request(up))
        assert await conn.read() == b"first"  # before the second chunk was even written
        go_on.set()
        assert await read_all(conn) == b"second"
        conn.release()
        assert await fetch(up, request(up)) == b"again"
        up.close()
    assert server.connections == 1


async def test_close_delimited_body_ends_with_the_connection() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await w.drain()

    server = Server(handler)
    async with server as up:
        for _ in range(2):
            assert await fetch(up, request(up)) == b"all of it"
        up.close()
    assert server.connections == 2  # such a connection is never reused
    assert len(server.requests) == 2


async def test_connection_close_header_is_honoured() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(b"bye", b"Connection: close\r\n"))
        await w.drain()
        await r.read()

    server = Server(handler)
    async with server as up:
        for _ in range(2):
            assert await fetch(up, request(up)) == b"bye"
        up.close()
    assert server.connections == 2


async def test_interim_1xx_answer_is_skipped() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        body = await s.read_request(r)
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(body))
        await w.drain()
        await r.read()

    async with Server(handler) as up:
        conn = await up.send(request(up, b"x"))
        assert conn.status == 200
        assert await read_all(conn) == b"x"
        conn.release()
        up.close()


async def test_eof_while_idle_drops_the_connection_before_use() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(b"once"))
        await w.drain()
        # then close while the client holds the connection idle

    server = Server(handler)
    async with server as up:
        conn = await up.send(request(up))
        assert await read_all(conn) == b"once"
        conn.release()
        await until(lambda: conn.closed, "the client to see the idle connection's EOF")
        assert await fetch(up, request(up)) == b"once"
        up.close()
    assert server.connections == 2
    assert len(server.requests) == 2  # nothing was sent into the dead connection


async def test_stray_bytes_while_idle_spoil_the_connection() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(b"x"))
        await w.drain()
        await asyncio.sleep(0.05)
        w.write(b"junk")
        await w.drain()
        await r.read()

    server = Server(handler)
    async with server as up:
        conn = await up.send(request(up))
        await read_all(conn)
        conn.release()
        await until(lambda: conn.closed, "the spoilt connection to be closed")
        up.close()


async def test_stale_reused_connection_is_retried_once_on_a_new_one() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(b"first"))
        await w.drain()
        await s.read_request(r)  # read the second request, then close without answering

    server = Server(handler)
    async with server as up:
        assert await fetch(up, request(up)) == b"first"
        assert await fetch(up, request(up)) == b"first"  # answered on a second connection
        up.close()
    assert server.connections == 2
    assert len(server.requests) == 3


async def test_fresh_connection_closed_after_the_request_is_an_error_not_a_replay() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)

    server = Server(handler)
    async with server as up:
        with pytest.raises(UpstreamClosed):
            await up.send(request(up))
        up.close()
    assert len(server.requests) == 1
    assert server.connections == 1


async def test_body_cut_short_raises_after_what_arrived() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await w.drain()

    async with Server(handler) as up:
        conn = await up.send(request(up))
        assert await conn.read() == b"0123456789"
        with pytest.raises(UpstreamProtocolError):
            await conn.read()
        conn.release()
        up.close()


async def test_invalid_http_is_a_protocol_error() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await w.drain()
        await r.read()

    async with Server(handler) as up:
        with pytest.raises(UpstreamProtocolError):
            await up.send(request(up))
        up.close()


async def test_refused_connection_is_a_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    up = Upstream(f"http://127.0.0.1:{port}")
    with pytest.raises(UpstreamConnectError, match=str(port)):
        await up.send(request(up))


async def test_read_timeout_fails_and_closes_the_connection() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        await r.readexactly(1)  # never answers; raises on the client's close

    server = Server(handler)
    async with server as base:
        up = Upstream(base.base_url, Timeouts(first_byte=0.2))
        t0 = time.monotonic()
        with pytest.raises(UpstreamTimeout, match=r"0\.2 s"):
            await up.send(request(up))
        assert time.monotonic() - t0 < 2
        await until(lambda: server.eofs == 1, "the timed-out connection to be closed")


async def test_write_timeout_when_the_server_reads_nothing() -> None:
    stop = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await stop.wait()

    async with Server(handler) as base:
        up = Upstream(base.base_url, Timeouts(write=0.2))
        big = b"x" * (64 << 20)  # more than loopback's socket buffers hold
        with pytest.raises(UpstreamTimeout, match="sending"):
            await up.send(request(up, big))
        stop.set()
        up.close()


async def test_cancellation_closes_the_connection() -> None:
    got = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        got.set()
        await r.readexactly(1)

    server = Server(handler)
    async with server as up:
        task = asyncio.get_running_loop().create_task(up.send(request(up)))
        await got.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: server.eofs == 1, "the cancelled request's connection to close")
        up.close()


async def test_cancelled_body_read_does_not_return_the_connection() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        await w.drain()
        await r.readexactly(1)

    server = Server(handler)
    async with server as up:
        conn = await up.send(request(up))
        assert await conn.read() == b"a"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.read(), 0.05)
        conn.release()
        await until(lambda: server.eofs == 1, "the half-read connection to close")
        up.close()


async def test_expired_idle_connection_is_not_reused(
    echo: tuple[Server, Upstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, up = echo
    monkeypatch.setattr(upstream_mod, "KEEPALIVE_EXPIRY", -1.0)
    for _ in range(2):
        await fetch(up, request(up))
    assert server.connections == 2


async def test_closed_upstream_refuses_new_requests(echo: tuple[Server, Upstream]) -> None:
    server, up = echo
    await fetch(up, request(up))
    up.close()
    await until(lambda: server.eofs == 1, "the idle connection to be closed")
    with pytest.raises(UpstreamClosed):
        await up.send(request(up))


async def test_retire_closes_idle_connections_now_and_busy_ones_after_their_answer(
    echo: tuple[Server, Upstream],
) -> None:
    server, up = echo
    idle = await up.send(request(up))
    busy = await up.send(request(up))
    assert server.connections == 2
    await read_all(idle)
    idle.release()  # back in the pool, idle
    up.retire()
    assert idle.closed, "an idle connection would delay the stopping child's exit"
    assert not busy.closed
    assert await read_all(busy) == b'{"n": 1}'
    busy.release()
    assert busy.closed, "a retired upstream pools nothing"
    await until(lambda: server.eofs == 2, "the server to see both connections end")
    with pytest.raises(UpstreamClosed):
        await up.send(request(up))


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


async def test_a_streams_prefill_is_under_the_first_byte_timeout_not_the_idle_one() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(SSE_HEAD)  # llama-server sends a stream's head at once ...
        await w.drain()
        await asyncio.sleep(0.6)  # ... and its first event only after the prefill
        for event in (b"data: 1\n\n", b"data: 2\n\n"):
            w.write(b"%x\r\n%s\r\n" % (len(event), event))
            await w.drain()
        await asyncio.sleep(0.6)  # then a silence longer than the idle timeout
        w.write(b"0\r\n\r\n")
        await w.drain()

    async with Server(handler) as base:
        up = Upstream(base.base_url, Timeouts(first_byte=5.0, idle=0.3))
        conn = await up.send(request(up))
        try:
            first = await conn.read()  # after 0.6 s, twice the idle timeout: not cut
            assert first.startswith(b"data: 1\n\n")

            async def drain() -> None:
                while await conn.read():
                    pass

            with pytest.raises(UpstreamTimeout, match="silence"):
                await drain()
        finally:
            conn.release()
