"""The fake llama-server's HTTP side: a minimal threaded HTTP/1.1 server and its routes.

See fake_llama_server.py for the command line and the lifecycle. Stdlib only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import fake_llama_replies as replies

if TYPE_CHECKING:
    from fake_llama_server import Options


T0 = time.monotonic()
MID_STREAM_EVENTS = 3
FLUSH_BYTES = 64 * 1024


class State:
    """Everything the request threads share."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.ready = False
        self.ready_at: float | None = None
        self.n_slots = int(opts.flag("-np", "--parallel") or 4)
        if self.n_slots <= 0:
            self.n_slots = 4
        self.n_ctx = int(opts.flag("-c", "--ctx-size") or 0) or 4096
        alias = opts.flag("-a", "--alias")
        self.model_name = alias or os.path.basename(opts.model)
        self.api_key = opts.flag("--api-key") or os.environ.get("LLAMA_API_KEY") or None
        self.embeddings = opts.flag("--embedding", "--embeddings", "--rerank", "--reranking")
        self.rerank = opts.flag("--rerank", "--reranking")
        self.metrics = opts.flag("--metrics") is not None
        self.slots_enabled = opts.flag("--no-slots") is None
        self.quiet = opts.flag("--log-disable") is not None or (
            int(opts.flag("-lv", "--verbosity", "--log-verbosity") or 3) < 3
        )
        # --rpc host:port,...: like llama-server, abort when a worker is gone mid-request
        self.rpc = [w.rpartition(":") for w in (opts.flag("--rpc") or "").split(",") if w]
        self.slot_sem = threading.Semaphore(self.n_slots)
        self.lock = threading.Lock()
        self.busy = [False] * self.n_slots
        self.completed = 0
        self.tokens_predicted = 0
        self.prompt_tokens = 0
        self.fake_echo = {"argv": opts.argv, "pid": os.getpid()}
        self.created = int(time.time())

    def log(self, line: str, level: str = "I") -> None:
        """One log line as this llama-server build writes it: ``0.00.006.367 I srv ...``."""
        if self.quiet:
            return
        us = int((time.monotonic() - T0) * 1e6)
        stamp = (
            f"{us // 60_000_000}.{us // 1_000_000 % 60:02d}.{us // 1000 % 1000:03d}.{us % 1000:03d}"
        )
        sys.stderr.write(f"{stamp} {level} {line}\n")


def _check_rpc(state: State) -> None:
    """llama.cpp's RPC backend aborts the process when a worker stops answering; so do we."""
    for host, _, port in state.rpc:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
        except OSError:
            _crash(state, f"RPC_STATUS_ASSERT failed: lost {host}:{port}")


def _crash(state: State, why: str) -> None:
    state.log(f"fake: crash injected ({why})", "E")
    sys.stderr.flush()
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)


REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def _hold(path: str, after: int) -> None:
    """Count this completion in ``path``.count; past ``after``, wait while ``path`` exists."""
    fd = os.open(path + ".count", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, b"x")  # one byte a request: appends are atomic, the size is the count
        n = os.fstat(fd).st_size
    finally:
        os.close(fd)
    while n > after and os.path.exists(path):
        time.sleep(0.02)


class Handler(socketserver.StreamRequestHandler):
    """A minimal HTTP/1.1 server (keep-alive, chunked both ways).

    Not http.server: importing it (email, http.client, ssl) costs more than the whole
    rest of the fake's start-up.
    """

    disable_nagle_algorithm = True  # Nagle + delayed ACK would add ~40 ms per SSE chunk
    state: State
    headers: dict[str, str]
    close_connection: bool
    status: int

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                continue
            parts = line.decode("latin-1").split()
            if len(parts) != 3:
                self.close_connection = True
                self.headers = {}
                self._error(400, "bad request line", "invalid_request_error")
                return
            method, self.path, version = parts
            self.headers = {}
            while True:
                h = self.rfile.readline(65537)
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                self.headers[k.strip().lower()] = v.strip()
            conn = self.headers.get("connection", "").lower()
            self.close_connection = conn == "close" or (
                version == "HTTP/1.0" and conn != "keep-alive"
            )
            if self.headers.get("expect", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._dispatch(method)
            if self.close_connection:
                return

    # --- plumbing ----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _head(self, status: int, ctype: str, extra: str) -> bytes:
        conn = "Connection: close\r\n" if self.close_connection else ""
        reason = REASONS.get(status, "")
        return (
            f"HTTP/1.1 {status} {reason}\r\nServer: llama.cpp\r\nContent-Type: {ctype}\r\n"
            f"Access-Control-Allow-Origin: *\r\n{conn}{extra}\r\n"
        ).encode()

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.status = status
        head = self._head(status, ctype, f"Content-Length: {len(body)}\r\n")
        self.wfile.write(head + body)

    def _json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: int, message: str, etype: str) -> None:
        self._json(status, {"error": {"code": status, "message": message, "type": etype}})

    def _stream(self, events: Iterator[bytes], crash_mid: bool) -> None:
        self.status = 200
        w = self.wfile.write
        w(self._head(200, "text/event-stream", "Transfer-Encoding: chunked\r\n"))
        delay = float(self.state.opts.fake.get("token-delay") or 0.0)
        per_event = delay > 0 or crash_mid
        buf = bytearray()
        for k, ev in enumerate(events):
            if per_event:
                if k > 0:
                    _check_rpc(self.state)
                w(b"%x\r\n%s\r\n" % (len(ev), ev))
                if crash_mid and k + 1 >= MID_STREAM_EVENTS:
                    _crash(self.state, "mid-stream")
                if delay > 0:
                    time.sleep(delay)
            else:
                # Batching many events per write is what lets the fake outrun any relay.
                buf += ev
                if len(buf) >= FLUSH_BYTES:
                    w(b"%x\r\n%s\r\n" % (len(buf), buf))
                    buf.clear()
        if buf:
            w(b"%x\r\n%s\r\n" % (len(buf), buf))
        w(b"0\r\n\r\n")

    def _dispatch(self, method: str) -> None:
        st = self.state
        path = self.path.split("?", 1)[0]
        self.status = 0
        try:
            body = self._read_body()
            if method == "OPTIONS":  # CORS pre-flight is answered before the loading gate
                self._send(200, b"", "text/plain")
            elif not st.ready:
                self._error(503, "Loading model", "unavailable_error")
            elif st.api_key and path not in ("/health", "/v1/health", "/") and not self._auth():
                self._error(401, "Invalid API Key", "authentication_error")
            else:
                route = ROUTES.get((method, path))
                if route is None:
                    self._error(404, "File Not Found", "not_found_error")
                else:
                    try:
                        req = json.loads(body) if body else {}
                    except ValueError as exc:
                        self._error(400, f"invalid JSON: {exc}", "invalid_request_error")
                    else:
                        route(self, req if isinstance(req, dict) else {})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing left to say
        if path not in ("/health", "/v1/health"):
            st.log(
                f"srv  log_server_r: done request: {method} {path} {self.client_address[0]} "
                f"{self.status}"
            )

    def _auth(self) -> bool:
        got = self.headers.get("x-api-key") or ""
        bearer = self.headers.get("authorization", "")
        if bearer.startswith("Bearer "):
            got = bearer[len("Bearer ") :]
        return got == self.state.api_key

    # --- routes --------------------------------------------------------------------------------

    def health(self, req: dict[str, Any]) -> None:
        self._json(200, {"status": "ok"})

    def _complete(self, req: dict[str, Any], kind: str) -> None:
        st = self.state
        fake = st.opts.fake
        if fake.get("hang-requests"):
            threading.Event().wait()
        if fake.get("hold-file"):
            _hold(str(fake["hold-file"]), int(fake.get("hold-after") or 0))
        crash_mid = bool(fake.get("crash-mid-stream"))
        if kind == "chat":
            words, prompt_n = replies.chat_words(req.get("messages"))
            limit = req.get("max_completion_tokens", req.get("max_tokens"))
        else:
            words, prompt_n = replies.prompt_words(req.get("prompt"))
            limit = req.get("n_predict", req.get("max_tokens"))
        limit = limit if isinstance(limit, int) else None
        stream = bool(req.get("stream"))
        with st.slot_sem:
            with st.lock:
                slot = st.busy.index(False)
                st.busy[slot] = True
            try:
                plan = replies.Plan(words, prompt_n, limit, fake.get("chunks"), st.model_name)
                echo = st.fake_echo
                if crash_mid and not stream:
                    _crash(st, "mid-stream, before a non-stream answer")
                _check_rpc(st)
                if kind == "chat" and stream:
                    opts = req.get("stream_options") or {}
                    inc = bool(isinstance(opts, dict) and opts.get("include_usage"))
                    self._stream(replies.chat_events(plan, inc, echo), crash_mid)
                elif kind == "chat":
                    self._json(200, replies.chat_response(plan, echo))
                elif kind == "oai" and stream:
                    self._stream(replies.completion_events(plan, echo), crash_mid)
                elif kind == "oai":
                    self._json(200, replies.completion_response(plan, echo))
                elif stream:
                    self._stream(replies.native_events(plan, req.get("prompt"), echo), crash_mid)
                else:
                    final = replies.native_final(plan, plan.text(), req.get("prompt"), echo)
                    self._json(200, final)
            finally:
                with st.lock:
                    st.busy[slot] = False
                    st.completed += 1
                    st.tokens_predicted += plan.n
                    st.prompt_tokens += plan.prompt_n
                    done = st.completed
        limit_n = fake.get("crash-after-requests")
        if limit_n is not None and done >= limit_n:
            _crash(st, f"after {done} requests")

    def chat(self, req: dict[str, Any]) -> None:
        self._complete(req, "chat")

    def completions(self, req: dict[str, Any]) -> None:
        self._complete(req, "oai")

    def native(self, req: dict[str, Any]) -> None:
        self._complete(req, "native")

    def embeddings(self, req: dict[str, Any]) -> None:
        st = self.state
        if st.embeddings is None:
            msg = "This server does not support embeddings. Start it with `--embeddings`"
            self._error(501, msg, "not_supported_error")
            return
        raw = req.get("input", req.get("content", ""))
        inputs = [raw] if isinstance(raw, str) else [str(x) for x in raw]
        if self.path.startswith("/v1/"):
            self._json(200, replies.embeddings_response(inputs, st.model_name))
        else:
            self._json(
                200, [{"index": i, "embedding": [replies.embed(t)]} for i, t in enumerate(inputs)]
            )

    def rerank(self, req: dict[str, Any]) -> None:
        st = self.state
        if st.rerank is None:
            msg = "This server does not support reranking. Start it with `--reranking`"
            self._error(501, msg, "not_supported_error")
            return
        query = str(req.get("query", ""))
        tei = "texts" in req
        docs = [str(d) for d in (req.get("texts") if tei else req.get("documents")) or []]
        scored = replies.rerank_scores(query, docs)
        top_n = req.get("top_n")
        if isinstance(top_n, int):
            scored = scored[:top_n]
        if tei:
            self._json(200, [{"index": i, "score": s} for i, s in scored])
            return
        n = len(query.split()) + sum(len(d.split()) for d in docs)
        self._json(
            200,
            {
                "model": st.model_name,
                "object": "list",
                "usage": {"prompt_tokens": n, "total_tokens": n},
                "results": [{"index": i, "relevance_score": s} for i, s in scored],
            },
        )

    def models(self, req: dict[str, Any]) -> None:
        st = self.state
        self._json(200, replies.models_body(st.model_name, st.n_ctx, st.created))

    def props(self, req: dict[str, Any]) -> None:
        st = self.state
        body = replies.props_body(
            st.model_name, st.opts.model, st.n_ctx, st.n_slots, st.slots_enabled, st.metrics
        )
        body["fake"] = {
            **st.fake_echo,
            "env": dict(os.environ),
            "ready_at": st.ready_at,
            "flags": st.opts.flags,
            "switches": st.opts.fake,
            "completed": st.completed,
        }
        self._json(200, body)

    def slots(self, req: dict[str, Any]) -> None:
        st = self.state
        if not st.slots_enabled:
            self._error(501, "This server does not support slots endpoint.", "not_supported_error")
            return
        with st.lock:
            busy = list(st.busy)
        self._json(
            200,
            [
                {"id": i, "n_ctx": st.n_ctx, "speculative": False, "is_processing": b}
                for i, b in enumerate(busy)
            ],
        )

    def echo(self, req: dict[str, Any]) -> None:
        """What arrived, for routes the fake does not model (/infill, /tokenize, slot actions,
        /v1/messages, ...): the relay's tests check that a request arrives intact."""
        path, _, query = self.path.partition("?")
        headers = {k: v for k, v in self.headers.items() if k not in ("host", "content-length")}
        self._json(
            200,
            {"echo": {"path": path, "query": query, "body": req, "headers": headers}},
        )

    def ui_page(self, req: dict[str, Any]) -> None:
        """A small page at / and an asset, as builds with the embedded web UI serve them."""
        path = self.path.partition("?")[0]
        if path == "/":
            page = b'<!doctype html><title>llama.cpp</title><script src="/bundle.js"></script>'
            self._send(200, page, "text/html; charset=utf-8")
        else:
            self._send(200, b"console.log('fake ui');", "application/javascript; charset=utf-8")

    def metrics(self, req: dict[str, Any]) -> None:
        st = self.state
        if not st.metrics:
            msg = "This server does not support metrics endpoint. Start it with `--metrics`"
            self._error(501, msg, "not_supported_error")
            return
        with st.lock:
            rows = [
                ("prompt_tokens_total", "counter", st.prompt_tokens),
                ("tokens_predicted_total", "counter", st.tokens_predicted),
                ("requests_processing", "gauge", sum(st.busy)),
            ]
        text = "".join(
            f"# HELP llamacpp:{n} {n}\n# TYPE llamacpp:{n} {t}\nllamacpp:{n} {v}\n"
            for n, t, v in rows
        )
        self._send(200, text.encode(), "text/plain; version=0.0.4")


ECHO_POSTS = (
    "/infill", "/tokenize", "/detokenize", "/apply-template", "/v1/messages",
    "/v1/messages/count_tokens", "/v1/responses", "/responses", "/slots/0",
    "/chat/completions/input_tokens", "/v1/chat/completions/input_tokens", "/predict",
    "/lora-adapters", "/props",
)  # fmt: skip

ROUTES: dict[tuple[str, str], Callable[[Handler, dict[str, Any]], None]] = {
    ("GET", "/health"): Handler.health,
    ("GET", "/v1/health"): Handler.health,
    ("GET", "/v1/models"): Handler.models,
    ("GET", "/models"): Handler.models,
    ("GET", "/props"): Handler.props,
    ("GET", "/slots"): Handler.slots,
    ("GET", "/metrics"): Handler.metrics,
    ("POST", "/v1/chat/completions"): Handler.chat,
    ("POST", "/chat/completions"): Handler.chat,
    ("POST", "/v1/completions"): Handler.completions,
    ("POST", "/completion"): Handler.native,
    ("POST", "/completions"): Handler.native,
    ("POST", "/v1/embeddings"): Handler.embeddings,
    ("POST", "/embeddings"): Handler.embeddings,
    ("POST", "/embedding"): Handler.embeddings,
    **{
        ("POST", p): Handler.rerank
        for p in ("/rerank", "/reranking", "/v1/rerank", "/v1/reranking")
    },
    ("GET", "/"): Handler.ui_page,
    ("GET", "/bundle.js"): Handler.ui_page,
    **{("POST", p): Handler.echo for p in ECHO_POSTS},
    **{("GET", p): Handler.echo for p in ("/lora-adapters", "/cors-proxy", "/tools")},
}


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 512
    # On Windows SO_REUSEADDR lets two processes bind the same port: keep it off there.
    allow_reuse_address = sys.platform != "win32"
