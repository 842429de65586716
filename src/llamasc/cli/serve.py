"""`llamasc serve`: run the daemon (one OpenAI endpoint over a pool of llama-servers).

Every option also has an environment variable (llama-sidecar's names where they existed) and
a config-file key; the command line wins over the environment, which wins over the file.
Values are taken as text and validated together, so a bad one is one line naming it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from llamasc.config.settings import Settings
    from llamasc.server import ServeInfo

_Text = str | None


def _opt(*names: str, env: str | None = None, metavar: str = "TEXT", help: str) -> Any:
    # Taken as text (not int/float): Settings validates every source the same way, so a bad
    # value is one line naming the option, not click's multi-line usage error.
    text = f"{help} [env: {env}]" if env else help
    return typer.Option(*names, metavar=metavar, help=text, show_default=False)


_Config = Annotated[
    _Text,
    _opt("--config", env="LLAMASC_CONFIG", metavar="PATH", help="Config file (.toml or .yaml)."),
]
_Bind = Annotated[
    _Text,
    _opt(
        "--bind",
        env="LLAMA_SIDECAR_BIND",
        metavar="HOST:PORT",
        help="Where to listen [default: 127.0.0.1:8402].",
    ),
]
_LlamaServer = Annotated[
    _Text,
    _opt("--llama-server", env="LLAMA_SERVER_BIN", metavar="PATH", help="The llama-server binary."),
]
_ModelMap = Annotated[
    _Text,
    _opt(
        "--model-map",
        env="MODEL_DIR_MAP_FILE",
        metavar="PATH",
        help='JSON file {"model id": "path.gguf"}.',
    ),
]
_ModelsDir = Annotated[
    list[str] | None,
    _opt(
        "--models-dir",
        env="LLAMASC_MODELS_DIR",
        metavar="DIR",
        help="Serve every GGUF model below DIR (repeatable; ids like name:quant).",
    ),
]
# model discovery
_HfCache = Annotated[
    bool,
    typer.Option(
        "--hf-cache",
        help="Also serve the GGUFs of the Hugging Face and llama.cpp caches (ids "
        "owner/repo:QUANT; nothing is downloaded). Env LLAMASC_HF_CACHE.",
    ),
]
_NoMmprojAuto = Annotated[
    bool,
    typer.Option(
        "--no-mmproj-auto",
        help="Do not pass a folder's vision projector (mmproj) to its models.",
    ),
]
_WatchModels = Annotated[
    bool,
    typer.Option(
        "--watch-models",
        help="Poll the models folders and pick up added, removed and changed files "
        "(also: SIGHUP, POST /models?reload=1). Env LLAMASC_WATCH_MODELS.",
    ),
]
_WatchInterval = Annotated[
    _Text,
    _opt(
        "--watch-interval",
        env="LLAMASC_WATCH_INTERVAL",
        metavar="S",
        help="Poll period of --watch-models [default: 2].",
    ),
]
_MaxSidecars = Annotated[
    _Text,
    _opt(
        "--max-sidecars",
        env="MAX_SIDECARS",
        metavar="N",
        help="llama-server children at most [default: 2].",
    ),
]
_PortRange = Annotated[
    _Text,
    _opt(
        "--port-range",
        env="PORT_RANGE",
        metavar="LO-HI",
        help="Ports for the children [default: 8500-8599].",
    ),
]
_BaseArgs = Annotated[
    _Text,
    _opt(
        "--base-args", env="BASE_ARGS", metavar="JSON", help="Flags of every child, a JSON array."
    ),
]
_ApiKey = Annotated[
    _Text,
    _opt(
        "--api-key",
        env="LLAMASC_API_KEY",
        metavar="KEY",
        help="Require Authorization: Bearer KEY (not on /health).",
    ),
]
# -- issue 9: who may call, and how long a client or a child may keep us waiting
_CorsOrigins = Annotated[
    _Text,
    _opt(
        "--cors-origins",
        env="LLAMASC_CORS_ORIGINS",
        metavar="ORIGINS",
        help="Web page origins allowed to call the daemon, comma-separated "
        "(e.g. http://localhost:3000); others get 403 [default: none].",
    ),
]
_MaxConnections = Annotated[
    _Text,
    _opt(
        "--max-connections",
        env="LLAMASC_MAX_CONNECTIONS",
        metavar="N",
        help="Open client connections at most, then 503 [default: from the open-file limit].",
    ),
]
_FirstByte = Annotated[
    _Text,
    _opt(
        "--upstream-first-byte-timeout",
        env="LLAMASC_UPSTREAM_FIRST_BYTE_TIMEOUT",
        metavar="S",
        help="504 when llama-server sends nothing for S seconds after a request [default: 600].",
    ),
]
_Idle = Annotated[
    _Text,
    _opt(
        "--upstream-idle-timeout",
        env="LLAMASC_UPSTREAM_IDLE_TIMEOUT",
        metavar="S",
        help="End an answer when llama-server is silent S seconds mid-answer [default: 120].",
    ),
]
_QueueTimeout = Annotated[
    _Text,
    _opt(
        "--queue-timeout",
        env="LLAMASC_QUEUE_TIMEOUT",
        metavar="S",
        help="Wait for a free slot at most S seconds, then 503 [default: 60].",
    ),
]
_HealthTimeout = Annotated[
    _Text,
    _opt(
        "--health-timeout",
        env="HEALTH_TIMEOUT_SECONDS",
        metavar="S",
        help="Readiness timeout of a child [default: 60].",
    ),
]
_HealthInterval = Annotated[
    _Text,
    _opt(
        "--health-interval",
        env="HEALTH_INTERVAL_SECONDS",
        metavar="S",
        help="Health check period [default: 30].",
    ),
]
_StopGrace = Annotated[
    _Text,
    _opt(
        "--stop-grace",
        env="LLAMASC_STOP_GRACE",
        metavar="S",
        help="SIGTERM to SIGKILL delay for a child [default: 5].",
    ),
]
_ShutdownGrace = Annotated[
    _Text,
    _opt(
        "--shutdown-grace",
        env="LLAMASC_SHUTDOWN_GRACE",
        metavar="S",
        help="On SIGINT/SIGTERM, let requests finish for S seconds [default: 30].",
    ),
]
_BodyLimit = Annotated[
    _Text,
    _opt(
        "--body-limit",
        env="LLAMASC_BODY_LIMIT",
        metavar="SIZE",
        help="Largest request body, e.g. 32MiB [default: 32MiB].",
    ),
]
_StateFile = Annotated[
    _Text,
    _opt(
        "--state-file",
        env="LLAMASC_STATE_FILE",
        metavar="PATH",
        help="Where children are recorded for crash recovery.",
    ),
]
_LogDir = Annotated[
    _Text,
    _opt(
        "--log-dir", env="LLAMASC_LOG_DIR", metavar="DIR", help="Where each child's log is written."
    ),
]
_LogFile = Annotated[
    _Text,
    _opt(
        "--log-file",
        env="LLAMASC_LOG_FILE",
        metavar="PATH",
        help="Write the daemon log to PATH (rotating), e.g. as a service.",
    ),
]
# ---- scheduling (issue 12): memory, fairness, lifetimes, slot cache
_MemoryBudget = Annotated[
    _Text,
    _opt(
        "--memory-budget",
        env="LLAMASC_MEMORY_BUDGET",
        metavar="DEV=SIZE,...",
        help="Memory per device, e.g. cuda0=22GiB,host=48GiB [default: what is free at start].",
    ),
]
_MaxWait = Annotated[
    _Text,
    _opt(
        "--max-wait",
        env="LLAMASC_MAX_WAIT",
        metavar="S",
        help="A request for an unloaded model waits at most S s for a busy one [default: 10].",
    ),
]
_MinResident = Annotated[
    _Text,
    _opt(
        "--min-resident",
        env="LLAMASC_MIN_RESIDENT",
        metavar="S",
        help="Keep a swapped-in model at least S s unless it goes idle [default: 2].",
    ),
]
_Ttl = Annotated[
    _Text,
    _opt(
        "--ttl",
        env="LLAMASC_TTL",
        metavar="S",
        help="Stop a sidecar idle for S s (0 = never; per model: ttl) [default: 0].",
    ),
]
_Preload = Annotated[
    list[str] | None,
    typer.Option(
        "--preload",
        metavar="ID",
        help="Start this model at start-up, in the background (repeatable). Env LLAMASC_PRELOAD.",
        show_default=False,
    ),
]
_SlotCacheMinTokens = Annotated[
    _Text,
    _opt(
        "--slot-cache-min-tokens",
        env="LLAMASC_SLOT_CACHE_MIN_TOKENS",
        metavar="N",
        help="Save a slot's KV cache on a swap only from N tokens [default: 1024].",
    ),
]
_SlotCacheSize = Annotated[
    _Text,
    _opt(
        "--slot-cache-size",
        env="LLAMASC_SLOT_CACHE_SIZE",
        metavar="SIZE",
        help="Disk for saved slot caches, oldest deleted first [default: 20GiB].",
    ),
]
_LogLevel = Annotated[
    _Text,
    _opt(
        "--log-level",
        env="LOG_LEVEL",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR [default: INFO].",
    ),
]

# --- observability and TLS
_History = Annotated[
    _Text,
    _opt(
        "--history",
        env="LLAMASC_HISTORY",
        metavar="PATH",
        help="Request history database [default: history.sqlite3 in the state directory].",
    ),
]
_HistoryDays = Annotated[
    _Text,
    _opt(
        "--history-days",
        env="LLAMASC_HISTORY_DAYS",
        metavar="DAYS",
        help="Keep request history this many days [default: 14].",
    ),
]
_TlsCert = Annotated[
    _Text,
    _opt(
        "--tls-cert-file",
        env="LLAMASC_TLS_CERT_FILE",
        metavar="PATH",
        help="Serve HTTPS with this certificate (PEM; with --tls-key-file).",
    ),
]
_TlsKey = Annotated[
    _Text,
    _opt(
        "--tls-key-file",
        env="LLAMASC_TLS_KEY_FILE",
        metavar="PATH",
        help="The private key of --tls-cert-file (PEM).",
    ),
]


_ConfigDir = Annotated[
    _Text,
    _opt(
        "--config-dir",
        metavar="DIR",
        help="Merge the llama-swap *.yaml fragments of DIR after --config.",
    ),
]


def serve(
    *,
    config: _Config = None,
    config_dir: _ConfigDir = None,
    bind: _Bind = None,
    llama_server: _LlamaServer = None,
    model_map: _ModelMap = None,
    models_dir: _ModelsDir = None,
    max_sidecars: _MaxSidecars = None,
    port_range: _PortRange = None,
    base_args: _BaseArgs = None,
    api_key: _ApiKey = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback --bind without an API key.")
    ] = False,
    queue_timeout: _QueueTimeout = None,
    health_timeout: _HealthTimeout = None,
    health_interval: _HealthInterval = None,
    stop_grace: _StopGrace = None,
    shutdown_grace: _ShutdownGrace = None,
    body_limit: _BodyLimit = None,
    state_file: _StateFile = None,
    log_dir: _LogDir = None,
    log_file: _LogFile = None,
    log_level: _LogLevel = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request (costs latency).")
    ] = False,
    cors_origins: _CorsOrigins = None,
    max_connections: _MaxConnections = None,
    upstream_first_byte_timeout: _FirstByte = None,
    upstream_idle_timeout: _Idle = None,
    watch_config: Annotated[
        bool,
        typer.Option(
            "--watch-config",
            help="Reload the config when its file changes (polled every 2 s; SIGHUP always "
            "reloads).",
        ),
    ] = False,
    hf_cache: _HfCache = False,
    no_mmproj_auto: _NoMmprojAuto = False,
    watch_models: _WatchModels = False,
    watch_interval: _WatchInterval = None,
    overlap_swaps: Annotated[
        bool,
        typer.Option(
            "--overlap-swaps",
            help="Start the next child while the evicted one exits (faster swaps; both hold "
            "memory for that moment, so mind VRAM). Env LLAMASC_OVERLAP_SWAPS.",
        ),
    ] = False,
    memory_budget: _MemoryBudget = None,
    max_wait: _MaxWait = None,
    min_resident: _MinResident = None,
    ttl: _Ttl = None,
    preload: _Preload = None,
    no_slot_cache: Annotated[
        bool,
        typer.Option(
            "--no-slot-cache",
            help="Do not keep slots' KV caches across swaps. Env LLAMASC_SLOT_CACHE=0.",
        ),
    ] = False,
    slot_cache_min_tokens: _SlotCacheMinTokens = None,
    slot_cache_size: _SlotCacheSize = None,
    history: _History = None,
    history_days: _HistoryDays = None,
    no_history: Annotated[
        bool, typer.Option("--no-history", help="Keep no request history. Env LLAMASC_NO_HISTORY.")
    ] = False,
    metrics_public: Annotated[
        bool,
        typer.Option(
            "--metrics-public",
            help="Serve GET /metrics without the API key (a scraper on a trusted network).",
        ),
    ] = False,
    no_observability: Annotated[
        bool,
        typer.Option(
            "--no-observability",
            help="No metrics, events or history (the leanest proxy). Env LLAMASC_OBSERVABILITY=0.",
        ),
    ] = False,
    tls_cert_file: _TlsCert = None,
    tls_key_file: _TlsKey = None,
) -> None:
    """Serve an OpenAI-compatible API over a pool of llama-server processes."""
    from llamasc.config.settings import load_settings
    from llamasc.server import run

    cli = {
        "bind": bind,
        "llama_server_bin": llama_server,
        "model_map_file": model_map,
        "models_dirs": models_dir or None,
        "hf_cache": hf_cache or None,
        "mmproj_auto": False if no_mmproj_auto else None,
        "watch_models": watch_models or None,
        "watch_interval": watch_interval,
        "max_sidecars": max_sidecars,
        "port_range": port_range,
        "base_args": base_args,
        "api_key": api_key,
        "insecure": insecure or None,
        "queue_timeout": queue_timeout,
        "health_timeout": health_timeout,
        "health_interval": health_interval,
        "stop_grace": stop_grace,
        "shutdown_grace": shutdown_grace,
        "body_limit": body_limit,
        "state_file": state_file,
        "log_dir": log_dir,
        "log_file": log_file,
        "log_level": log_level,
        "access_log": access_log or None,
        "overlap_swaps": overlap_swaps or None,
        "cors_origins": cors_origins,
        "max_connections": max_connections,
        "upstream_first_byte_timeout": upstream_first_byte_timeout,
        "upstream_idle_timeout": upstream_idle_timeout,
        "memory_budget": memory_budget,
        "max_wait": max_wait,
        "min_resident": min_resident,
        "ttl": ttl,
        "preload": list(preload) if preload else None,
        "slot_cache": False if no_slot_cache else None,
        "slot_cache_min_tokens": slot_cache_min_tokens,
        "slot_cache_size": slot_cache_size,
        "history": history,
        "history_days": history_days,
        "no_history": no_history or None,
        "metrics_public": metrics_public or None,
        "observability": False if no_observability else None,
        "tls_cert_file": tls_cert_file,
        "tls_key_file": tls_key_file,
    }
    settings = load_settings(cli, config_path=config, config_dir=config_dir)
    handler = setup_logging(settings)
    import os

    path = config or os.environ.get("LLAMASC_CONFIG") or None
    watched = [p for p in (path, config_dir) if p] if watch_config else []
    if config_dir:
        watched += [str(p) for p in sorted(Path(config_dir).glob("*.y*ml"))] if watch_config else []
    try:
        run(
            settings,
            on_ready=_announce,
            reload_source=lambda: load_settings(cli, config_path=config, config_dir=config_dir),
            watch_paths=watched,
        )
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def setup_logging(settings: Settings) -> logging.Handler:
    """stderr, or a rotating file with --log-file (a service has no console to write to).

    Replaces only a handler of ours from an earlier call, never another program's (a host
    application's, or pytest's log capture); the caller removes the one returned when it is
    done, so nothing keeps writing to a stream that has gone away."""
    from logging.handlers import RotatingFileHandler

    from llamasc.errors import ConfigError

    handler: logging.Handler
    if settings.log_file is not None:
        path = Path(settings.log_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = RotatingFileHandler(
                path, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
            )
        except OSError as exc:
            raise ConfigError(f"--log-file: cannot open {path}: {exc.strerror or exc}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    return handler


_HANDLER_NAME = "llamasc.serve"


def _announce(info: ServeInfo) -> None:
    """The one friendly line (plus a curl example) once the daemon accepts connections."""
    if sys.stdout is None:  # pythonw / a service without a console
        return
    from llamasc.cli._output import console

    model = info.models[0] if info.models else "MODEL"
    out = console()
    out.print(
        f"[bold green]llamasc[/] serving {', '.join(info.models)} at "
        f"[bold]{info.url}/v1[/]  (Ctrl-C to stop)",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"  try: curl {info.url}/v1/chat/completions -H 'Content-Type: application/json' "
        f'-d \'{{"model": "{model}", "messages": [{{"role": "user", "content": "Hi"}}]}}\'',
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    for note in info.notes:
        out.print(f"  note: {note}", highlight=False, soft_wrap=True, markup=False)
    sys.stdout.flush()
