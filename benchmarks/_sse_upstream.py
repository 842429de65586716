"""A minimal llama-server stand-in for relay benchmarks: time-stamped SSE chunks, fast.

Takes llama-server's command line (``-m``, ``--host``, ``--port``; other flags ignored), prints
the readiness line, answers ``/health``, and streams ``max_tokens`` chat chunks for
``/v1/chat/completions``, each stamped with ``time.monotonic_ns()`` at the moment it is written,
so a client on the same machine can compute the per-chunk delivery latency. ``"pace_us"`` in the
request body spaces the chunks (0: as fast as the socket takes them).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time


def _arg(argv: list[str], *names: str, default: str = "") -> str:
    for i, tok in enumerate(argv):
        if tok in names and i + 1 < len(argv):
            return argv[i + 1]
    return default


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if path in ("/health", "/v1/health"):
                payload = b'{"status":"ok"}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(payload)).encode()
                    + b"\r\n\r\n"
                    + payload
                )
                await writer.drain()
                continue
            if method == "POST" and path.endswith("/chat/completions"):
                req = json.loads(body or b"{}")
                n = int(req.get("max_tokens", 16))
                pace = float(req.get("pace_us", 0)) / 1e6
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for i in range(n):
                    event = (
                        b'data: {"choices":[{"index":0,"delta":{"content":"x"},'
                        b'"finish_reason":null}],"i":%d,"t":%d}\n\n' % (i, time.monotonic_ns())
                    )
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                    if pace:
                        await asyncio.sleep(pace)
                done = b"data: [DONE]\n\n"
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _main(argv: list[str]) -> None:
    host = _arg(argv, "--host", default="127.0.0.1")
    port = int(_arg(argv, "--port", default="8080"))
    server = await asyncio.start_server(_handle, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"srv  llama_server: listening on http://{host}:{port}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
