"""Running the daemon: build catalog, pool and app from Settings, serve, shut down cleanly.

Shutdown (SIGINT/SIGTERM, or Ctrl-C): stop accepting, answer new requests with 503, let
in-flight requests finish within ``shutdown_grace`` seconds, then stop every llama-server
child and return normally (exit status 0). A second Ctrl-C skips the wait.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from llamasc.config import ModelCatalog, ModelEntry, discover_models, find_llama_server
from llamasc.config.settings import Settings, check_bind_security
from llamasc.errors import ConfigError, FlagError
from llamasc.flags import DEFAULT_BASE_ARGS, FlagPolicy, fix_legacy_base_args, validate_flags
from llamasc.server.app import LlamascApp, create_app
from llamasc.server.state import LlamaServerInfo

if TYPE_CHECKING:
    from llamasc.pool.child import Launcher

log = logging.getLogger(__name__)

VERSION_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServeInfo:
    """What the daemon serves, told to ``on_ready`` once it accepts connections."""

    url: str
    models: list[str]
    llama_server: LlamaServerInfo
    base_args: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


def probe_version(binary: Path, timeout: float = VERSION_TIMEOUT) -> str:
    """``llama-server --version``'s first line, or why it could not be read."""
    try:
        out = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"unknown (--version did not answer within {timeout:g} s)"
    except OSError as exc:
        return f"unknown ({exc.strerror or exc})"
    text = (out.stdout + b"\n" + out.stderr).decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if line.lower().startswith("version"):
            return line
    return lines[0] if lines else f"unknown (exit status {out.returncode})"


def build_catalog(settings: Settings) -> ModelCatalog:
    """Discovered models (model map, models dir or the demo) plus the config file's ``models``."""
    extra = {mid: m for mid, m in settings.models.items() if m.path is not None}
    if extra and not settings.model_map_file and not settings.models_dir:
        catalog = ModelCatalog()  # models listed in the config file replace the demo model
    else:
        catalog = discover_models(
            model_map_file=settings.model_map_file, models_dir=settings.models_dir
        )
    entries = dict(catalog.models)
    for model_id, m in settings.models.items():
        known = entries.get(model_id)
        if m.path is not None:
            entries[model_id] = ModelEntry(id=model_id, path=m.path, env=m.env, source="config")
        elif known is not None:
            entries[model_id] = ModelEntry(
                id=model_id, path=known.path, env={**known.env, **m.env}, source=known.source
            )
        else:
            raise ConfigError(
                f"models -> {model_id}: no such model (give it a path, or configure it via "
                "MODEL_DIR_MAP_FILE / --models-dir)"
            )
    return ModelCatalog(entries)


def resolve_base_args(settings: Settings) -> tuple[tuple[str, ...], list[str]]:
    """BASE_ARGS upgraded from llama-sidecar's spellings and checked in operator mode
    (``--rpc`` allowed: the operator's RPC workers, see :func:`check_rpc_setup`)."""
    args, notes = fix_legacy_base_args(
        DEFAULT_BASE_ARGS if settings.base_args is None else settings.base_args
    )
    validation = validate_flags(list(args), FlagPolicy.operator(allow=OPERATOR_NETWORK_FLAGS))
    if not validation.ok:
        raise ConfigError("BASE_ARGS: " + "; ".join(validation.problems))
    return args, notes


# --- RPC workers (issue 15) -----------------------------------------------------------------
# Network flags an operator may put in BASE_ARGS (never a client: X-Agent-Flags keeps them
# refused as network-class).
OPERATOR_NETWORK_FLAGS = frozenset({"--rpc"})


def check_rpc_setup(binary: Path, base_args: tuple[str, ...]) -> None:
    """At start-up: a ``--rpc`` in BASE_ARGS needs a llama-server built with RPC support,
    and every listed worker must answer. One ConfigError naming what is wrong."""
    from llamasc.errors import RpcWorkerError
    from llamasc.process.rpc import binary_supports_rpc, check_workers_blocking, rpc_workers

    workers = rpc_workers(base_args)
    if not workers:
        return
    try:
        check_workers_blocking(workers)
    except RpcWorkerError as exc:
        raise ConfigError(f"BASE_ARGS --rpc: {exc}") from None
    if not binary_supports_rpc(binary, workers):
        raise ConfigError(
            f"BASE_ARGS has --rpc, but {binary} was built without RPC support "
            "(it says 'RPC not supported in this build'; rebuild llama.cpp with -DGGML_RPC=ON)"
        )
    log.info("RPC workers answer: %s", ", ".join(w.address for w in workers))


def build_policy(settings: Settings) -> FlagPolicy:
    """The policy for X-Agent-Flags: untrusted, widened by the config file's flag_policy."""
    try:
        return FlagPolicy.untrusted(**settings.flag_policy)
    except (ValueError, FlagError) as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"flag_policy: {' '.join(first[:3])}") from None


def listen_socket(settings: Settings) -> socket.socket:
    """Bind the daemon's address now, so "address in use" is one clear line."""
    host, port = settings.host, settings.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"LLAMA_SIDECAR_BIND: cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    if sys.platform != "win32":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {settings.bind}: {exc.strerror or exc} "
            "(another daemon running? set LLAMA_SIDECAR_BIND / --bind)"
        ) from None
    sock.set_inheritable(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    """uvicorn, with our drain flag set on the first signal and no signal re-raised after a
    clean shutdown (uvicorn re-raises it, which would turn exit status 0 into 130/143)."""

    def __init__(self, config: uvicorn.Config, app: LlamascApp, on_started: Callable[[], None]):
        super().__init__(config)
        self._app = app
        self._on_started = on_started

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.llamasc.draining = True
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_started()


def _http_protocol() -> type[asyncio.Protocol] | str:
    import importlib.util

    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from llamasc.server._httpproto import CoalescingHttpToolsProtocol

    return CoalescingHttpToolsProtocol


def _uvicorn_config(app: LlamascApp, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",  # run() starts and stops the pool itself, around serve()
        log_config=None,
        access_log=settings.access_log,
        server_header=False,
        proxy_headers=False,
        ws="none",
        http=_http_protocol(),
        loop="auto",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        # uvicorn's 5 s default closes an agent's idle keep-alive connection between two turns
        # (a cold start or a swap easily takes longer), and clients that reuse it then see
        # "server disconnected". 75 s is what nginx and most load balancers use.
        timeout_keep_alive=75,
        log_level=settings.log_level.lower(),
    )


class Daemon:
    """A daemon built and bound, not yet serving: ``serve()`` in a loop, ``stop()`` from
    anywhere (tests run one in a thread; :func:`run` runs one in the main thread)."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_ready: Callable[[ServeInfo], None] | None = None,
        launcher: Launcher | None = None,
    ) -> None:
        from llamasc.pool.config import PoolConfig
        from llamasc.pool.pool import Pool

        check_bind_security(settings)
        binary = find_llama_server(settings.llama_server_bin, os.environ)
        catalog = build_catalog(settings)
        base_args, notes = resolve_base_args(settings)
        check_rpc_setup(binary, base_args)
        policy = build_policy(settings)
        info = LlamaServerInfo(path=binary, version=probe_version(binary))
        log.info("llama-server %s (%s)", binary, info.version)
        config = PoolConfig(
            max_sidecars=settings.max_sidecars,
            port_range=settings.port_range,
            queue_timeout=settings.queue_timeout,
            health_timeout=settings.health_timeout,
            health_interval=settings.health_interval,
            stop_grace=settings.stop_grace,
            overlap_swaps=settings.overlap_swaps,
            state_file=settings.resolved_state_file,
            log_dir=settings.resolved_log_dir,
        )
        self.pool = Pool(config, catalog, binary, base_args, launcher=launcher)
        self.app = create_app(
            settings, self.pool, catalog=catalog, llama_server=info, policy=policy
        )
        self.sock = listen_socket(settings)
        self.info = ServeInfo(_url(self.sock), catalog.ids(), info, base_args, notes)
        self._on_ready = on_ready
        self.uv_config = _uvicorn_config(self.app, settings)
        self.server = _Server(self.uv_config, self.app, self._started)

    @property
    def url(self) -> str:
        return self.info.url

    def _started(self) -> None:
        log.info("serving %s at %s/v1", ", ".join(self.info.models), self.info.url)
        if self._on_ready is not None:
            self._on_ready(self.info)

    async def serve(self) -> None:
        """Serve until stopped, then stop every child (also after a forced exit)."""
        try:
            await self.app.llamasc.startup()  # before serving: a failure is one clear error
            await self.server.serve(sockets=[self.sock])
        finally:
            await self.app.llamasc.shutdown()
            self.sock.close()

    def stop(self) -> None:
        """Begin a graceful shutdown, as SIGTERM would (safe from another thread)."""
        self.app.llamasc.draining = True
        self.server.should_exit = True


def run(settings: Settings, *, on_ready: Callable[[ServeInfo], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then stop every child. Raises LlamascError on bad setup."""
    daemon = Daemon(settings, on_ready=on_ready)
    try:
        with asyncio.Runner(loop_factory=daemon.uv_config.get_loop_factory()) as runner:
            runner.run(daemon.serve())
    finally:
        daemon.sock.close()


__all__ = [
    "Daemon",
    "ServeInfo",
    "build_catalog",
    "build_policy",
    "check_rpc_setup",
    "listen_socket",
    "probe_version",
    "resolve_base_args",
    "run",
]
