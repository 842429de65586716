"""Running the daemon: build catalog, pool and app from Settings, serve, shut down cleanly.

Shutdown (SIGINT/SIGTERM, or Ctrl-C): stop accepting, answer new requests with 503, let
in-flight requests finish within ``shutdown_grace`` seconds, then stop every llama-server
child and return normally (exit status 0). A second Ctrl-C skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from llamasc.config import ModelCatalog, find_llama_server
from llamasc.config.settings import Settings, check_bind_security, check_tls
from llamasc.errors import ConfigError, FlagError
from llamasc.flags import DEFAULT_BASE_ARGS, FlagPolicy, fix_legacy_base_args, validate_flags
from llamasc.pool.upstream_conn import Timeouts
from llamasc.server._httpbounds import BoundedHttpToolsProtocol, HttpBounds, default_max_connections
from llamasc.server.app import LlamascApp, create_app
from llamasc.server.cors import split_cors_origins
from llamasc.server.rescan import ModelRescanner, rescan_logged
from llamasc.server.state import DaemonState, LlamaServerInfo

if TYPE_CHECKING:
    from llamasc.pool.sidecar import Launcher
    from llamasc.server.reload import ReloadResult

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
    """Every model the settings name (see :mod:`llamasc.config.catalog`)."""
    from llamasc.config.catalog import build_catalog as build

    return build(settings).catalog


def resolve_base_args(settings: Settings) -> tuple[tuple[str, ...], list[str]]:
    """BASE_ARGS upgraded from llama-sidecar's spellings and checked in operator mode
    (``--rpc`` allowed: the operator's RPC workers, see :func:`check_rpc_setup`)."""
    args, notes = fix_legacy_base_args(
        DEFAULT_BASE_ARGS if settings.base_args is None else settings.base_args
    )
    validation = validate_flags(list(args), FlagPolicy.operator(allow=OPERATOR_NETWORK_FLAGS))
    if not validation.ok:
        raise ConfigError("BASE_ARGS: " + "; ".join(validation.problems))
    for warning in validation.warnings:
        log.warning("BASE_ARGS: %s", warning)
    return args, [*notes, *(f"BASE_ARGS: {w}" for w in validation.warnings)]


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


def absorb_cors_origins(settings: Settings) -> Settings:
    """``--cors-origins`` written in BASE_ARGS is the operator's list for llamasc: taken out
    of the children's arguments (they are never reached by a browser) and added to ours."""
    if not settings.base_args:
        return settings
    args, origins = split_cors_origins(settings.base_args)
    if not origins and len(args) == len(settings.base_args):
        return settings
    merged = tuple(dict.fromkeys((*settings.cors_origins, *origins)))
    return settings.model_copy(update={"base_args": args, "cors_origins": merged})


DEFAULT_CTX_CAP = 32768  # llama-sidecar's default context
DEFAULT_PARALLEL_CAP = 16


def policy_caps(base_args: Sequence[str]) -> dict[str, int]:
    """Default ``max_ctx_size``/``max_parallel`` for clients: what the base arguments give
    every sidecar (``-c``, ``-np``), else 32768 tokens and 16 slots."""
    from llamasc.flags import canonicalize

    tokens = canonicalize(list(base_args))
    found = {tokens[i]: tokens[i + 1] for i in range(len(tokens) - 1) if tokens[i][:2] == "--"}
    caps = {"max_ctx_size": DEFAULT_CTX_CAP, "max_parallel": DEFAULT_PARALLEL_CAP}
    for flag, key in (("--ctx-size", "max_ctx_size"), ("--parallel", "max_parallel")):
        with contextlib.suppress(KeyError, ValueError):
            value = int(found[flag])
            if value > 0:
                caps[key] = max(value, caps[key]) if key == "max_parallel" else value
    return caps


def build_policy(settings: Settings, base_args: Sequence[str] = ()) -> FlagPolicy:
    """The policy for X-Agent-Flags: untrusted, widened by the config file's flag_policy;
    per-request context and slots capped by what the base arguments configure."""
    try:
        return FlagPolicy.untrusted(**{**policy_caps(base_args), **settings.flag_policy})
    except (ValueError, FlagError) as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"flag_policy: {' '.join(first[:3])}") from None


def listen_sockets(settings: Settings) -> list[socket.socket]:
    """Bind every address of ``--bind`` (comma-separated, as llama-server's ``--host``)."""
    socks: list[socket.socket] = []
    try:
        binds = settings.binds
        for host, port in binds:
            socks.append(listen_socket(settings, host, port, v6only=len(binds) > 1))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def scheduling_config(settings: Settings, catalog: ModelCatalog) -> dict[str, Any]:
    """The pool's scheduling settings (issue 12), checked against the catalog."""
    from llamasc.config.scheduling import check_model_refs
    from llamasc.pool.admission import Group

    problems = check_model_refs(set(catalog.ids()), settings.preload, settings.groups)
    for model_id, m in settings.models.items():
        if m.args:
            checked = validate_flags(list(m.args), FlagPolicy.operator())
            problems += [f"models -> {model_id} -> args: {p}" for p in checked.problems]
    if problems:
        raise ConfigError("; ".join(problems))
    return {
        "memory_budget": settings.memory_budget,  # None: what the devices have free
        "max_wait": settings.max_wait,
        "min_resident": settings.min_resident,
        "ttl": settings.ttl,
        "preload": settings.preload,
        "slot_cache": settings.state_home / "slot-cache" if settings.slot_cache else None,
        "slot_cache_min_tokens": settings.slot_cache_min_tokens,
        "slot_cache_size": settings.slot_cache_size,
        "models": dict(settings.models),
        "groups": {
            name: Group(name, frozenset(g.members), g.swap, g.exclusive, g.persistent)
            for name, g in settings.groups.items()
        },
    }


def listen_socket(
    settings: Settings, host: str | None = None, port: int | None = None, *, v6only: bool = False
) -> socket.socket:
    """Bind the daemon's address now, so "address in use" is one clear line."""
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"LLAMA_SIDECAR_BIND: cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    if sys.platform != "win32":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only and family == socket.AF_INET6:  # "::" beside "0.0.0.0" must not claim IPv4 too
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConfigError(
            f"cannot listen on {shown}: {exc.strerror or exc} "
            "(another daemon running? set LLAMA_SIDECAR_BIND / --bind)"
        ) from None
    sock.set_inheritable(False)
    return sock


def _url(sock: socket.socket, *, tls: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


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


def http_bounds(settings: Settings) -> HttpBounds:
    """The per-connection bounds of :mod:`llamasc.server._httpbounds` from the settings."""
    return HttpBounds(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        max_connections=settings.max_connections or default_max_connections(),
    )


def _http_protocol(settings: Settings) -> type[asyncio.Protocol] | str:
    import importlib.util

    if importlib.util.find_spec("httptools") is None:
        return "h11"
    return BoundedHttpToolsProtocol.with_bounds(http_bounds(settings))


def _uvicorn_config(app: LlamascApp, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",  # run() starts and stops the pool itself, around serve()
        log_config=None,
        access_log=settings.access_log,
        server_header=False,
        proxy_headers=False,
        ws="none",
        http=_http_protocol(settings),
        h11_max_incomplete_event_size=settings.max_header_bytes,  # only without httptools
        loop="auto",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        # uvicorn's 5 s default closes an agent's idle keep-alive connection between two turns
        # (a cold start or a swap easily takes longer), and clients that reuse it then see
        # "server disconnected". 75 s is what nginx and most load balancers use.
        timeout_keep_alive=75,
        log_level=settings.log_level.lower(),
        ssl_certfile=str(settings.tls_cert_file) if settings.tls else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls else None,
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
        reload_source: Callable[[], Settings] | None = None,
        watch_paths: Sequence[str] = (),
    ) -> None:
        """``reload_source`` re-reads the settings for a reload (SIGHUP; ``watch_paths``
        are polled for changes when given)."""
        from llamasc.pool.config import PoolConfig
        from llamasc.pool.pool import Pool

        check_bind_security(settings)
        settings = absorb_cors_origins(settings)
        for warning in settings.swap_warnings:  # the llama-swap keys llamasc does not act on
            log.warning("config: %s", warning)
        tls_notes = check_tls(settings)
        for note in tls_notes:
            log.warning("%s", note)
        binary = find_llama_server(
            settings.llama_server_bin, os.environ, source=settings.source_of("llama_server_bin")
        )
        rescanner = _model_rescanner(settings)
        catalog = rescanner.discovered.catalog
        base_args, notes = resolve_base_args(settings)
        check_rpc_setup(binary, base_args)
        policy = build_policy(settings, base_args)
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
            upstream_timeouts=Timeouts(
                first_byte=settings.upstream_first_byte_timeout,
                idle=settings.upstream_idle_timeout,
            ),
            **scheduling_config(settings, catalog),
        )
        self.pool = Pool(config, catalog, binary, base_args, launcher=launcher)
        self.app = create_app(
            settings, self.pool, catalog=catalog, llama_server=info, policy=policy
        )
        self.app.llamasc.rescanner = rescanner
        self.socks = listen_sockets(settings)
        self.sock = self.socks[0]
        more = [f"also listening on {_url(s, tls=settings.tls)}" for s in self.socks[1:]]
        url = _url(self.sock, tls=settings.tls)
        self.info = ServeInfo(url, catalog.ids(), info, base_args, [*notes, *more, *tls_notes])
        self._on_ready = on_ready
        self.uv_config = _uvicorn_config(self.app, settings)
        self.server = _Server(self.uv_config, self.app, self._started)
        from llamasc.server.reload import Reloader

        self.reloader = Reloader(
            self.app.llamasc,
            self.pool,
            reload_source or (lambda: settings),
            build_catalog,
            watch_paths,
        )
        self.loop: asyncio.AbstractEventLoop | None = None

    async def reload_config(self) -> ReloadResult:
        """Re-read the config and apply it (see :mod:`llamasc.server.reload`)."""
        return await self.reloader.reload()

    def reload_threadsafe(self, timeout: float = 60) -> ReloadResult:
        """Reload from another thread (what SIGHUP does), waiting for the result."""
        assert self.loop is not None, "not serving"
        return asyncio.run_coroutine_threadsafe(self.reload_config(), self.loop).result(timeout)

    @property
    def url(self) -> str:
        return self.info.url

    def _started(self) -> None:
        log.info("serving %s at %s/v1", ", ".join(self.info.models), self.info.url)
        if self._on_ready is not None:
            self._on_ready(self.info)

    async def serve(self) -> None:
        """Serve until stopped, then stop every child (also after a forced exit)."""
        self.loop = asyncio.get_running_loop()
        hooks = install_reload_hooks(self)
        watcher = None
        try:
            # before serving (lifespan is off): a failed start is one clear error
            async with self.app.llamasc.running():
                try:
                    watcher = _start_model_rescans(self.app.llamasc)
                    await self.server.serve(sockets=self.socks)
                finally:
                    if watcher is not None:
                        watcher.cancel()
                    for task in hooks:
                        task.cancel()
                    await self.reloader.settle()
        finally:
            for sock in self.socks:
                sock.close()

    def stop(self) -> None:
        """Begin a graceful shutdown, as SIGTERM would (safe from another thread)."""
        self.app.llamasc.draining = True
        self.server.should_exit = True


def _model_rescanner(settings: Settings) -> ModelRescanner:
    """Discover the models once at start-up (strict: a bad setting is an error), keeping the
    header cache for later rescans."""
    from llamasc.config.catalog import build_catalog as build
    from llamasc.config.discovery import Scanner

    scanner = Scanner()
    found = build(settings, scanner=scanner)
    for bad in found.bad:
        log.warning("skipping %s: %s", bad.path, bad.error)
    return ModelRescanner(scanner, found)


def _start_model_rescans(state: DaemonState) -> asyncio.Task[None] | None:
    """``--watch-models`` polls the models folders (SIGHUP: :func:`install_reload_hooks`).
    Returns the poller."""
    rescanner = state.rescanner
    if not state.settings.watch_models or rescanner is None:
        return None
    return asyncio.create_task(
        rescanner.watch(state, state.settings.watch_interval), name="watch-models"
    )


def install_reload_hooks(daemon: Daemon) -> list[asyncio.Task[None]]:
    """Config reload on SIGHUP (main thread, POSIX) and, with watch paths, on file change.

    The one place the reload is hooked up, so it can be joined with other SIGHUP work.
    """
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is not None:

        def on_sighup() -> None:
            log.info("SIGHUP: reloading the config")
            tasks.append(loop.create_task(_reload(daemon)))

        # not in the main thread (tests run daemons in one): no signal, reload_threadsafe()
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(sighup, on_sighup)
    if daemon.reloader.watch_paths:
        tasks.append(loop.create_task(daemon.reloader.watch()))
    return tasks


async def _reload(daemon: Daemon) -> None:
    """SIGHUP: re-read the config (models, filters, keys...), then rescan the models folders
    (added, removed and changed files), in that order: the config may name other folders."""
    await daemon.reload_config()
    await rescan_logged(daemon.app.llamasc)


def run(
    settings: Settings,
    *,
    on_ready: Callable[[ServeInfo], None] | None = None,
    reload_source: Callable[[], Settings] | None = None,
    watch_paths: Sequence[str] = (),
) -> None:
    """Serve until SIGINT/SIGTERM, then stop every child. Raises LlamascError on bad setup."""
    daemon = Daemon(
        settings, on_ready=on_ready, reload_source=reload_source, watch_paths=watch_paths
    )
    try:
        with asyncio.Runner(loop_factory=daemon.uv_config.get_loop_factory()) as runner:
            runner.run(daemon.serve())
    finally:
        for sock in daemon.socks:
            sock.close()


__all__ = [
    "Daemon",
    "ServeInfo",
    "absorb_cors_origins",
    "build_catalog",
    "build_policy",
    "check_rpc_setup",
    "http_bounds",
    "listen_socket",
    "listen_sockets",
    "policy_caps",
    "probe_version",
    "resolve_base_args",
    "run",
    "scheduling_config",
]
