#!/usr/bin/env python3
"""A fake llama-server: same CLI, same log lines, same HTTP API shapes; starts in ~50 ms.

Run it like llama-server (``fake_llama_server.py -m M --host H --port P [flags]``). Every
other llama-server flag is accepted and recorded (a token after a flag is its value unless
it looks like a flag itself; a negative number is a value). Stdlib only.

Lifecycle, as the real server (see the llamasc reference notes): bind, then "load" (every
route answers 503 ``Loading model``), then ready (``/health`` 200), then the log line
``srv  llama_server: listening on http://H:P``. Log lines go to stderr with this build's
prefix (``0.00.006.367 I ``: elapsed time and level), failures as the real build words
them. SIGTERM/SIGINT before ready kill it at once (the real server installs its handlers
only after loading); after ready they make it exit 0.

Every JSON reply carries ``"fake": {"argv": [...], "pid": N}`` (argv without the program),
and ``GET /props`` adds ``"fake": {..., "env": {...}, "ready_at": unix_time, "flags": [...]}``
so tests can check what a child was given. As in the real server, ``/v1/embeddings`` needs
``--embedding`` and ``/v1/rerank`` needs ``--rerank`` (else 501), ``/metrics`` needs
``--metrics``, ``--api-key``/``LLAMA_API_KEY`` guard everything but ``/health``.

Fault injection, each as ``--fake-NAME`` or env ``FAKE_LLAMA_NAME`` (CLI wins):
  --fake-load-delay S        503 for S seconds before ready
  --fake-crash-on-start      print llama-server's model-load error lines, exit 1
  --fake-crash-after-requests N   die (SIGKILL itself) after answering N completions
  --fake-crash-mid-stream    die after a few SSE chunks (or before a non-stream answer)
  --fake-hang                never become ready
  --fake-hang-requests       accept completion requests, never answer them
  --fake-ignore-sigterm      ignore SIGTERM/SIGINT (and SIGBREAK on Windows)
  --fake-token-delay S       sleep S after each SSE chunk (0: as fast as possible, batched)
  --fake-chunks N            produce exactly N tokens per completion
  --fake-hold-file PATH      with --fake-hold-after N: completions after the N-th (counted
                             across processes in PATH.count) wait while PATH exists, so a
                             test can interrupt a client at a known point, not by racing it
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from fake_llama_http import Handler, Server, State

FAKE_SWITCHES: dict[str, type] = {
    "load-delay": float,
    "crash-on-start": bool,
    "crash-after-requests": int,
    "crash-mid-stream": bool,
    "hang": bool,
    "hang-requests": bool,
    "ignore-sigterm": bool,
    "token-delay": float,
    "chunks": int,
    "hold-file": str,
    "hold-after": int,
}
TRUTHY = {"1", "true", "yes", "on", "enabled"}


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _looks_like_flag(tok: str) -> bool:
    return tok.startswith("-") and len(tok) > 1 and not _is_number(tok)


class Options:
    """The parsed command line plus the fault switches."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.model = "models/7B/ggml-model-f16.gguf"
        self.host = "127.0.0.1"
        self.port = 8080
        self.flags: list[tuple[str, str | None]] = []
        self.fake: dict[str, Any] = {}
        for name, kind in FAKE_SWITCHES.items():
            env = os.environ.get("FAKE_LLAMA_" + name.upper().replace("-", "_"))
            if env is not None and env != "":
                self.fake[name] = env.lower() in TRUTHY if kind is bool else kind(env)
        i = 0
        while i < len(argv):
            tok = argv[i]
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            has_value = nxt is not None and not _looks_like_flag(nxt)
            if tok.startswith("--fake-"):
                name = tok[len("--fake-") :]
                kind = FAKE_SWITCHES.get(name)
                if kind is None:
                    _die(f"error: invalid argument: {tok}")
                if kind is bool:
                    self.fake[name] = True
                else:
                    if nxt is None:
                        _die(f"error: expected value for argument: {tok}")
                    self.fake[name] = kind(nxt)
                    i += 1
            elif tok.startswith("--") and "=" in tok:
                _die(f"error: invalid argument: {tok}")  # llama-server has no --k=v form
            elif tok in ("-h", "--help", "--usage"):
                sys.stderr.write("usage: llama-server [options] (fake)\n")
                sys.exit(0)
            elif tok == "--version":
                sys.stderr.write("version: 11434 (fake)\nbuilt with python for fake\n")
                sys.exit(0)
            elif tok in ("-m", "--model", "--host", "--port"):
                if nxt is None:
                    _die(f"error: expected value for argument: {tok}")
                if tok == "--host":
                    self.host = nxt
                elif tok == "--port":
                    self.port = int(nxt)
                else:
                    self.model = nxt
                i += 1
            elif _looks_like_flag(tok):
                name = tok.replace("_", "-") if tok.startswith("--") else tok
                self.flags.append((name, nxt if has_value else None))
                i += 1 if has_value else 0
            else:
                _die(f"error: invalid argument: {tok}")
            i += 1

    def flag(self, *names: str) -> str | None:
        """The last value given for any of ``names`` ("" for a bare flag), or None."""
        found: str | None = None
        for name, value in self.flags:
            if name in names:
                found = "" if value is None else value
        return found


def _die(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.exit(1)


def _soft_signals() -> list[signal.Signals]:
    sigs = [signal.SIGTERM, signal.SIGINT]
    if hasattr(signal, "SIGBREAK"):
        sigs.append(signal.SIGBREAK)
    return sigs


def main(argv: list[str]) -> int:
    opts = Options(argv)
    st = State(opts)
    Handler.state = st
    stop = threading.Event()
    ignore = bool(opts.fake.get("ignore-sigterm"))
    for sig in _soft_signals():
        signal.signal(sig, signal.SIG_IGN if ignore else signal.SIG_DFL)

    st.log("srv  llama_server: initializing ...")
    st.log(
        "cmn  common_param: common_params_print_info: verbosity = 3 "
        "(adjust with the `-lv N` CLI arg)"
    )
    if not st.api_key:
        st.log(
            "srv  llama_server: security: no API key is set and CORS allows all origins "
            "(see https://github.com/ggml-org/llama.cpp/pull/25655)",
            "W",
        )
    Server.address_family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
    try:
        httpd = Server((opts.host, opts.port), Handler)
    except OSError:
        st.log(
            "srv         start: couldn't bind HTTP server socket, "
            f"hostname: {opts.host}, port: {opts.port}",
            "E",
        )
        st.log("srv    operator(): operator(): cleaning up before exit...")
        st.log("srv  llama_server: exiting due to HTTP server error", "E")
        return 1
    port = httpd.server_address[1]
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    st.log(f"srv    load_model: loading model '{opts.model}'")
    if opts.fake.get("crash-on-start"):
        model = opts.model
        st.log(
            f"llama_model_load: error loading model: fake: failed to load model from {model}", "E"
        )
        st.log("llama_model_load_from_file_impl: failed to load model", "E")
        st.log(f"srv    load_model: failed to load model, '{model}'", "E")
        st.log("srv    operator(): operator(): cleaning up before exit...")
        st.log("srv  llama_server: exiting due to model loading error", "E")
        return 1
    if opts.fake.get("hang"):
        while True:
            stop.wait(0.2)  # a timed wait so Windows can still deliver console events
    deadline = time.monotonic() + float(opts.fake.get("load-delay") or 0.0)
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))
    st.log(f"srv    load_model: initializing slots, n_slots = {st.n_slots}")
    st.ready_at = time.time()
    st.ready = True
    st.log("srv  llama_server: model loaded")

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            st.log("Received second interrupt, terminating immediately.")
            sys.stderr.flush()
            os._exit(1)
        stop.set()

    if not ignore:
        for sig in _soft_signals():
            signal.signal(sig, on_signal)
    st.log(f"srv  llama_server: listening on http://{opts.host}:{port}")
    while not stop.wait(0.2):
        pass
    st.log("srv    operator(): operator(): cleaning up before exit...")
    httpd.server_close()
    sys.stderr.flush()
    # In-flight handler threads may be blocked (hang-requests): leave without joining them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
