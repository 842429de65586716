"""The daemon's settings: command line > environment > config file > defaults.

llama-sidecar's environment variables keep their names and meaning (``LLAMA_SERVER_BIN``,
``MODEL_DIR_MAP_FILE``, ``LLAMA_SIDECAR_BIND``, ``PORT_RANGE``, ``MAX_SIDECARS``, ``LOG_LEVEL``,
``BASE_ARGS``, ``HEALTH_TIMEOUT_SECONDS``, ``HEALTH_INTERVAL_SECONDS``); llamasc's own start
with ``LLAMASC_``. The config file (``--config PATH`` / ``LLAMASC_CONFIG``) is TOML or YAML,
chosen by its suffix, with the field names of :class:`Settings` as keys, plus two tables only
a file can express::

    [models.smollm2-135m]            # add a model, or give a discovered one an environment
    path = "models/smol.gguf"        # relative to the config file
    env = { GGML_CUDA_ENABLE_UNIFIED_MEMORY = "1" }

    [flag_policy]                    # widen what X-Agent-Flags may carry
    path_roots = { "--lora" = ["/srv/loras"] }

Parsing is separate from reading files, so every rule is testable without touching disk.
Every invalid value stops start-up with one line that names the setting the way the user
wrote it (``MAX_SIDECARS: must be an integer >= 1, got 'abc'``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from llamasc.config.origins import parse_origins
from llamasc.config.scheduling import (
    SCHEDULING_EXPECT,
    SCHEDULING_SOURCES,
    ModelScheduling,
    SchedulingSettings,
)
from llamasc.config.swapfields import ModelSwapFields, SwapFields
from llamasc.errors import ConfigError

DEFAULT_BIND = "127.0.0.1:8402"
DEFAULT_BODY_LIMIT = 32 * 1024 * 1024

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ModelSettings(ModelScheduling, ModelSwapFields):
    """Per-model additions from the config file (scheduling fields: ``config.scheduling``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # false: /v1/embeddings and /v1/rerank do not start a sidecar with --embedding/--reranking
    embeddings: bool = True
    # --pooling of the sidecar /v1/embeddings starts for this model (e.g. "mean")
    pooling: Literal["none", "mean", "cls", "last", "rank"] | None = None
    # shown in GET /models as llama.cpp's router shows --tags
    tags: tuple[str, ...] = ()
    # model discovery: false = no projector, a path = this one, unset = the folder's own
    mmproj: bool | Path | None = None


class Settings(SchedulingSettings, SwapFields):
    """Everything ``llamasc serve`` needs to know, validated (scheduling: ``config.scheduling``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    llama_server_bin: Path | None = None
    model_map_file: Path | None = None
    models_dir: Path | None = None
    bind: str = DEFAULT_BIND
    port_range: tuple[int, int] = (8500, 8599)
    max_sidecars: int = Field(default=2, ge=1)
    log_level: LogLevel = "INFO"
    base_args: tuple[str, ...] | None = None  # None: llamasc.flags.DEFAULT_BASE_ARGS
    health_timeout: float = Field(default=60.0, gt=0)
    health_interval: float = Field(default=30.0, gt=0)
    api_key: str | None = None
    queue_timeout: float = Field(default=60.0, ge=0)
    stop_grace: float = Field(default=5.0, ge=0)
    shutdown_grace: float = Field(default=30.0, ge=0)
    body_limit: int = Field(default=DEFAULT_BODY_LIMIT, ge=1024)
    home: Path | None = None
    state_file: Path | None = None
    log_dir: Path | None = None
    log_file: Path | None = None
    insecure: bool = False
    access_log: bool = False
    overlap_swaps: bool = False
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    flag_policy: dict[str, Any] = Field(default_factory=dict)
    # -- issue 9: web page origins, HTTP bounds, upstream timeouts (llamasc.server.cors)
    cors_origins: tuple[str, ...] = ()
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)  # field -> as the user named it
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=30.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=8)
    max_connections: int | None = Field(default=None, ge=1)  # None: from the open-file limit
    upstream_first_byte_timeout: float = Field(default=600.0, gt=0)
    upstream_idle_timeout: float = Field(default=120.0, gt=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        if isinstance(value, str | list | tuple):
            return parse_origins(value)
        return value

    # model discovery (llamasc.config.discovery)
    models_dirs: tuple[Path, ...] = ()
    hf_cache: bool = False
    mmproj_auto: bool = True
    watch_models: bool = False
    watch_interval: float = Field(default=2.0, gt=0)

    @field_validator("models_dirs", mode="before")
    @classmethod
    def _split_models_dirs(cls, value: Any) -> Any:
        if isinstance(value, str | os.PathLike):  # LLAMASC_MODELS_DIR="a:b" (";" on Windows)
            return tuple(p for p in str(value).split(os.pathsep) if p)
        return value

    @property
    def all_models_dirs(self) -> tuple[Path, ...]:
        """``models_dirs`` then ``models_dir``, each once."""
        out: list[Path] = []
        for d in (*self.models_dirs, *((self.models_dir,) if self.models_dir else ())):
            if d not in out:
                out.append(d)
        return tuple(out)

    # observability (metrics, events, history) and TLS
    observability: bool = True
    metrics_public: bool = False
    history: Path | None = None
    no_history: bool = False
    history_days: float = Field(default=14.0, gt=0)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        split_binds(value)
        return value

    @field_validator("port_range", mode="before")
    @classmethod
    def _parse_port_range(cls, value: Any) -> Any:
        if isinstance(value, str):
            lo, sep, hi = value.strip().partition("-")
            try:
                return (int(lo), int(hi) if sep else int(lo))
            except ValueError:
                raise ValueError("port range") from None
        return value

    @field_validator("port_range")
    @classmethod
    def _check_port_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        lo, hi = value
        if not 1 <= lo <= hi <= 65535:
            raise ValueError("port range")
        return value

    @field_validator("base_args", mode="before")
    @classmethod
    def _parse_base_args(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("json array") from None
        if value is not None and (
            not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value)
        ):
            raise ValueError("json array")
        return value

    @field_validator("body_limit", "max_header_bytes", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        level = value.strip().upper() if isinstance(value, str) else value
        return "WARNING" if level == "WARN" else level

    def source_of(self, name: str) -> str:
        """Where setting ``name`` came from, as the user spelled it (for error messages)."""
        return self._origins.get(name) or SOURCES.get(name, (None, None))[1] or name

    @property
    def host(self) -> str:
        return split_binds(self.bind)[0][0]

    @property
    def port(self) -> int:
        return split_binds(self.bind)[0][1]

    @property
    def binds(self) -> list[tuple[str, int]]:
        """Every (host, port) to listen on (``--bind`` may list several, comma-separated)."""
        return split_binds(self.bind)

    @property
    def state_home(self) -> Path:
        """The per-user directory for the state file and the children's logs."""
        return self.home if self.home is not None else default_home()

    @property
    def resolved_state_file(self) -> Path:
        return self.state_file or self.state_home / "sidecars.json"

    @property
    def resolved_log_dir(self) -> Path:
        return self.log_dir or self.state_home / "logs"

    @property
    def resolved_history(self) -> Path | None:
        """The request history database, or None when it is off."""
        if self.no_history or not self.observability:
            return None
        return self.history or self.state_home / "history.sqlite3"

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None


# field -> (environment variable, command-line option). Fields missing here come only from
# the command line (insecure) or only from the file (models, flag_policy).
SOURCES: dict[str, tuple[str | None, str | None]] = {
    "llama_server_bin": ("LLAMA_SERVER_BIN", "--llama-server"),
    "model_map_file": ("MODEL_DIR_MAP_FILE", "--model-map"),
    "models_dirs": ("LLAMASC_MODELS_DIR", "--models-dir"),
    "hf_cache": ("LLAMASC_HF_CACHE", "--hf-cache"),
    "mmproj_auto": ("LLAMASC_MMPROJ_AUTO", "--no-mmproj-auto"),
    "watch_models": ("LLAMASC_WATCH_MODELS", "--watch-models"),
    "watch_interval": ("LLAMASC_WATCH_INTERVAL", "--watch-interval"),
    "bind": ("LLAMA_SIDECAR_BIND", "--bind"),
    "port_range": ("PORT_RANGE", "--port-range"),
    "max_sidecars": ("MAX_SIDECARS", "--max-sidecars"),
    "log_level": ("LOG_LEVEL", "--log-level"),
    "base_args": ("BASE_ARGS", "--base-args"),
    "health_timeout": ("HEALTH_TIMEOUT_SECONDS", "--health-timeout"),
    "health_interval": ("HEALTH_INTERVAL_SECONDS", "--health-interval"),
    "api_key": ("LLAMASC_API_KEY", "--api-key"),
    "queue_timeout": ("LLAMASC_QUEUE_TIMEOUT", "--queue-timeout"),
    "stop_grace": ("LLAMASC_STOP_GRACE", "--stop-grace"),
    "shutdown_grace": ("LLAMASC_SHUTDOWN_GRACE", "--shutdown-grace"),
    "body_limit": ("LLAMASC_BODY_LIMIT", "--body-limit"),
    "home": ("LLAMASC_HOME", None),
    "state_file": ("LLAMASC_STATE_FILE", "--state-file"),
    "log_dir": ("LLAMASC_LOG_DIR", "--log-dir"),
    "log_file": ("LLAMASC_LOG_FILE", "--log-file"),
    "insecure": (None, "--insecure"),
    "access_log": ("LLAMASC_ACCESS_LOG", "--access-log"),
    "overlap_swaps": ("LLAMASC_OVERLAP_SWAPS", "--overlap-swaps"),
    "cors_origins": ("LLAMASC_CORS_ORIGINS", "--cors-origins"),
    "header_timeout": ("LLAMASC_HEADER_TIMEOUT", None),
    "body_timeout": ("LLAMASC_BODY_TIMEOUT", None),
    "max_header_bytes": ("LLAMASC_MAX_HEADER_BYTES", None),
    "max_headers": ("LLAMASC_MAX_HEADERS", None),
    "max_connections": ("LLAMASC_MAX_CONNECTIONS", "--max-connections"),
    "upstream_first_byte_timeout": (
        "LLAMASC_UPSTREAM_FIRST_BYTE_TIMEOUT",
        "--upstream-first-byte-timeout",
    ),
    "upstream_idle_timeout": ("LLAMASC_UPSTREAM_IDLE_TIMEOUT", "--upstream-idle-timeout"),
    **SCHEDULING_SOURCES,
    "observability": ("LLAMASC_OBSERVABILITY", "--no-observability"),
    "metrics_public": ("LLAMASC_METRICS_PUBLIC", "--metrics-public"),
    "history": ("LLAMASC_HISTORY", "--history"),
    "no_history": ("LLAMASC_NO_HISTORY", "--no-history"),
    "history_days": ("LLAMASC_HISTORY_DAYS", "--history-days"),
    "tls_cert_file": ("LLAMASC_TLS_CERT_FILE", "--tls-cert-file"),
    "tls_key_file": ("LLAMASC_TLS_KEY_FILE", "--tls-key-file"),
}

# What a valid value looks like, for the one-line error.
_EXPECT: dict[str, str] = {
    "bind": "HOST:PORT, or several hosts comma-separated (e.g. 127.0.0.1:8402, [::1]:8402 or "
    "127.0.0.1,::1:8402)",
    "port_range": "a range of ports like 8500-8599 within 1-65535",
    "max_sidecars": "an integer >= 1",
    "log_level": "one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
    "base_args": 'a JSON array of strings, e.g. ["-c", "4096"]',
    "health_timeout": "a number of seconds > 0",
    "health_interval": "a number of seconds > 0",
    "queue_timeout": "a number of seconds >= 0",
    "stop_grace": "a number of seconds >= 0",
    "shutdown_grace": "a number of seconds >= 0",
    "body_limit": "a size >= 1024 bytes (e.g. 33554432, 32MiB, 512KiB)",
    "insecure": "true or false",
    "access_log": "true or false",
    "overlap_swaps": "true or false",
    "cors_origins": "a comma-separated list of origins like http://localhost:3000 (or *)",
    "header_timeout": "a number of seconds > 0",
    "body_timeout": "a number of seconds > 0",
    "max_header_bytes": "a size >= 1024 bytes (e.g. 65536, 64KiB)",
    "max_headers": "an integer >= 8",
    "max_connections": "an integer >= 1",
    "upstream_first_byte_timeout": "a number of seconds > 0",
    "upstream_idle_timeout": "a number of seconds > 0",
    **SCHEDULING_EXPECT,
    "hf_cache": "true or false",
    "mmproj_auto": "true or false",
    "watch_models": "true or false",
    "watch_interval": "a number of seconds > 0",
    "observability": "true or false",
    "metrics_public": "true or false",
    "no_history": "true or false",
    "history_days": "a number of days > 0",
}

_PATH_FIELDS = (
    "llama_server_bin", "model_map_file", "models_dir", "home", "state_file", "log_dir",
    "log_file", "history", "tls_cert_file", "tls_key_file",
)  # fmt: skip

_SIZE_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
    "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
}  # fmt: skip


def parse_size(text: str) -> int:
    """``"32MiB"`` -> 33554432; a bare number is bytes."""
    s = text.strip().lower().replace(" ", "")
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num) :]
    if unit not in _SIZE_UNITS or not num:
        raise ValueError("size")
    try:
        return int(float(num) * _SIZE_UNITS[unit])
    except ValueError:
        raise ValueError("size") from None


def split_bind(bind: str) -> tuple[str, int]:
    """``"127.0.0.1:8402"`` -> ``("127.0.0.1", 8402)``; IPv6 hosts go in brackets."""
    host, sep, port_s = bind.strip().rpartition(":")
    if not sep or not host:
        raise ValueError("bind")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError("bind")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("bind")  # an IPv6 address needs brackets to be told from its port
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError("bind") from None
    if not 0 <= port <= 65535:
        raise ValueError("bind")
    return host, port


def _bare_host(text: str) -> str:
    """A host with no port: a name, an IPv4 address, or an IPv6 one (brackets optional)."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError("bind")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("bind") from None
    return host


def split_binds(bind: str) -> list[tuple[str, int]]:
    """Several addresses, as llama-server's ``--host`` takes them: ``127.0.0.1,::1:8402``
    (the port after the last colon applies to every host without its own) or
    ``127.0.0.1:8402,[::1]:8403``. Without a comma, :func:`split_bind`."""
    if "," not in bind:
        return [split_bind(bind)]
    *firsts, last = (item.strip() for item in bind.split(","))
    try:
        last_host, port = split_bind(last)
    except ValueError:
        head, sep, port_s = last.rpartition(":")  # llama-server's unbracketed "::1:8402"
        if not sep or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
            raise ValueError("bind") from None
        last_host, port = _bare_host(head), int(port_s)
    out: list[tuple[str, int]] = []
    for item in firsts:
        try:
            out.append(split_bind(item))
        except ValueError:
            out.append((_bare_host(item), port))
    out.append((last_host, port))
    return out


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_home(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """``LLAMASC_HOME``, else the platform's per-user state directory."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if env.get("LLAMASC_HOME"):
        return Path(env["LLAMASC_HOME"]).expanduser()
    if platform == "win32":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "llamasc"
    if platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "llamasc"
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llamasc"


def parse_config_text(text: str, *, fmt: str, source: str) -> dict[str, Any]:
    """Parse a config file's text (``fmt`` is ``"toml"`` or ``"yaml"``) into a dict."""
    if fmt == "toml":
        import tomllib

        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    elif fmt == "yaml":
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f":{where.line + 1}" if where is not None else ""
            raise ConfigError(f"{source}{line}: invalid YAML: {exc}".splitlines()[0]) from None
    else:
        raise ConfigError(f"{source}: unknown config format {fmt!r} (use .toml, .yaml or .yml)")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
    return data


def read_config_file(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Read and parse a config file; relative paths in it resolve against its directory."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    fmt = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}.get(suffix, suffix.lstrip("."))
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from None
    data = parse_config_text(text, fmt=fmt, source=str(p))
    # --- llama-swap config.yaml (issue 13): read with llama-swap's rules instead
    if fmt == "yaml":
        from llamasc.config.llamaswap import is_llama_swap

        if is_llama_swap(data):
            return read_llama_swap(p, None, environ)
    return _anchor_paths(data, p.parent)


def read_llama_swap(
    path: str | os.PathLike[str] | None,
    config_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A llama-swap config (and ``--config-dir`` fragments) as native settings data.

    Raises ConfigError listing every problem; warnings travel in ``swap_warnings``.
    """
    from llamasc.config.llamaswap import parse_document, read_sources
    from llamasc.config.llamaswap.native import to_native

    doc, names = read_sources(path, config_dir, environ)
    cfg = parse_document(doc, source=", ".join(names))
    if cfg.errors:
        more = f" (and {len(cfg.errors) - 1} more)" if len(cfg.errors) > 1 else ""
        raise ConfigError(f"{names[0]}: {cfg.errors[0]}{more}", details=cfg.errors[1:])
    data, warnings = to_native(cfg)
    data["swap_warnings"] = warnings
    return data


def _anchor_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    def anchor(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            return str(base / value)
        return value

    out = dict(data)
    for name in _PATH_FIELDS:
        if name in out:
            out[name] = anchor(out[name])
    models = out.get("models")
    if isinstance(models, dict):
        out["models"] = {
            k: {**v, "path": anchor(v["path"])} if isinstance(v, dict) and "path" in v else v
            for k, v in models.items()
        }
        for v in out["models"].values():
            if isinstance(v, dict) and isinstance(v.get("mmproj"), str):
                v["mmproj"] = anchor(v["mmproj"])
    if isinstance(out.get("models_dirs"), list):
        out["models_dirs"] = [anchor(d) for d in out["models_dirs"]]
    return out


def settings_from_sources(
    *,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file_data: Mapping[str, Any] | None = None,
    file_name: str = "config file",
) -> Settings:
    """Merge the sources (command line > environment > file > defaults) and validate.

    ``cli`` maps field names to values, None meaning "not given". ``env`` defaults to
    ``os.environ``. Raises ConfigError naming the offending setting as its source spells it.
    """
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in (file_data or {}).items():
        merged[key] = value
        origin[key] = f"{file_name}: {key}"
    for name, (env_name, _) in SOURCES.items():
        if env_name and env.get(env_name, "") != "":
            merged[name] = env[env_name]
            origin[name] = env_name
    for name, value in (cli or {}).items():
        if value is not None:
            merged[name] = value
            origin[name] = SOURCES.get(name, (None, f"--{name.replace('_', '-')}"))[1] or name
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, merged, origin)) from None
    settings._origins = dict(origin)
    return settings


def _one_line(exc: ValidationError, merged: Mapping[str, Any], origin: Mapping[str, str]) -> str:
    err = exc.errors()[0]
    loc = err["loc"]
    field = str(loc[0]) if loc else "settings"
    where = origin.get(field, field)
    if len(loc) > 1:
        where += " -> " + " -> ".join(str(p) for p in loc[1:])
    if err["type"] == "extra_forbidden":
        model = ModelSettings if field == "models" and len(loc) > 2 else Settings
        known = ", ".join(sorted(model.model_fields))
        return f"{where}: unknown setting (known: {known})"
    expect = _EXPECT.get(field) if len(loc) == 1 else None
    got = merged.get(field, err.get("input"))
    if expect is not None:
        return f"{where}: must be {expect}, got {got!r}"
    return f"{where}: {err['msg']}, got {err.get('input')!r}"


def load_settings(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
) -> Settings:
    """Settings for a daemon: reads the config file named by ``config_path``/``LLAMASC_CONFIG``
    (and, for llama-swap configs, the fragments of ``config_dir``)."""
    env = os.environ if env is None else env
    path = config_path or env.get("LLAMASC_CONFIG") or None
    if config_dir is not None:
        file_data: dict[str, Any] | None = read_llama_swap(path, config_dir, env)
    else:
        file_data = read_config_file(path, env) if path else None
    return settings_from_sources(cli=cli, env=env, file_data=file_data, file_name=str(path))


def check_bind_security(settings: Settings) -> None:
    """Refuse to serve a non-loopback address without an API key, unless told --insecure."""
    if (
        all(is_loopback(h) for h, _ in settings.binds)
        or settings.api_key
        or settings.api_keys
        or settings.insecure
    ):
        return
    raise ConfigError(
        f"refusing to listen on {settings.bind} without an API key: anyone who can reach it "
        "could start llama-server processes; set --api-key/LLAMASC_API_KEY "
        "(or pass --insecure if the network is trusted)"
    )


def check_tls(settings: Settings) -> list[str]:
    """TLS files given both or neither (ConfigError), readable; warnings for a clear-text bind."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if (cert is None) != (key is None):
        raise ConfigError(
            "--tls-cert-file and --tls-key-file go together: give both (HTTPS) or neither"
        )
    for name, path in (("--tls-cert-file", cert), ("--tls-key-file", key)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{name}: no such file: {path}")
    if cert is not None and key is not None:
        import ssl

        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"--tls-cert-file/--tls-key-file: cannot load the certificate and key: {exc}"
            ) from None
    if cert is None and not is_loopback(settings.host):
        return [
            f"listening on {settings.bind} without TLS: API keys and prompts travel in clear "
            "text (use --tls-cert-file/--tls-key-file)"
        ]
    return []


__all__ = [
    "DEFAULT_BIND",
    "DEFAULT_BODY_LIMIT",
    "SOURCES",
    "ModelSettings",
    "Settings",
    "check_bind_security",
    "check_tls",
    "default_home",
    "is_loopback",
    "load_settings",
    "parse_config_text",
    "parse_size",
    "read_config_file",
    "read_llama_swap",
    "settings_from_sources",
    "split_bind",
    "split_binds",
]
