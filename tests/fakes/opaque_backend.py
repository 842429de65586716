"""A tiny OpenAI-ish server that is not llama-server: what an opaque upstream looks like.

    python opaque_backend.py serve --port N [--ready-after S] [--marker FILE] [--ignore-term]
    python opaque_backend.py stop --pid PID --model ID --marker FILE

``serve`` answers ``GET /health`` and ``GET /ready`` (503 until ``--ready-after`` seconds
have passed), ``POST /v1/chat/completions`` (a reply naming its port and the request's
headers it saw) and any other path with 404. On SIGTERM it appends ``term <pid>`` to the
marker file and exits, unless ``--ignore-term``. ``stop`` is a ``cmdStop``: it appends
``cmdstop <pid> <model>`` to the marker file and sends SIGTERM to ``pid``.
Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _mark(path: str | None, line: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def serve(args: argparse.Namespace) -> None:
    started = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *a: object) -> None:
            print("opaque: " + fmt % a, flush=True)

        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path in ("/health", "/ready"):
                ready = time.monotonic() - started >= args.ready_after
                self._send(200 if ready else 503, {"status": "ok" if ready else "loading"})
            else:
                self._send(404, {"error": "no such path"})

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n) or b"{}")
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": "no such path"})
                return
            seen = {k.lower(): v for k, v in self.headers.items()}
            self._send(200, {
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": f"opaque on port {args.port}"}}],
                "seen_headers": sorted(seen),
                "pid": os.getpid(),
            })  # fmt: skip

    def on_term(signum: int, frame: object) -> None:
        _mark(args.marker, f"term {os.getpid()}")
        if not args.ignore_term:
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"opaque backend listening on {args.port}", flush=True)
    server.serve_forever()


def stop(args: argparse.Namespace) -> None:
    _mark(args.marker, f"cmdstop {args.pid} {args.model}")
    os.kill(args.pid, signal.SIGTERM)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--ready-after", type=float, default=0.0)
    s.add_argument("--marker")
    s.add_argument("--ignore-term", action="store_true")
    t = sub.add_parser("stop")
    t.add_argument("--pid", type=int, required=True)
    t.add_argument("--model", required=True)
    t.add_argument("--marker", required=True)
    args = p.parse_args()
    serve(args) if args.what == "serve" else stop(args)


if __name__ == "__main__":
    main()
