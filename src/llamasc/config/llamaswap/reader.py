"""Parsing a llama-swap config document into a :class:`SwapConfig`, with llama-swap's rules.

Every problem is one line naming where it is (``models -> smol -> proxy: ...``) and is
collected, not raised, so ``llamasc config check`` lists them all; a model with a problem is
left out of ``models`` and its first problem kept in ``model_errors``. Keys llamasc does not
act on are accepted with one warning each.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from llamasc.config.llamaswap.command import (
    is_llama_server,
    join_continuations,
    split_command,
    split_server_args,
    strip_comment_lines,
)
from llamasc.config.llamaswap.macros import Macros, expand, merge_macros, parse_macros
from llamasc.config.llamaswap.model import (
    Kind,
    SwapConfig,
    SwapGroup,
    SwapModel,
    SwapPeer,
)
from llamasc.config.llamaswap.values import (
    boolean,
    env_list,
    integer,
    mapping,
    num,
    parse_filters,
    parse_timeouts,
    str_list,
    string,
)
from llamasc.errors import ConfigError

TOP_ACTED = frozenset(
    {
        "healthCheckTimeout", "logLevel", "startPort", "globalTTL", "sendLoadingState",
        "includeAliasesInList", "macros", "apiKeys", "hooks", "groups", "routing", "peers",
        "models", "unloadTimeout",
    }
)  # fmt: skip
TOP_WARNED = {
    "logTimeFormat": "log lines use llamasc's format",
    "logToStdout": "llamasc logs to stderr or --log-file",
    "logRequests": "use --access-log",
    "metricsMaxInMemory": "not used",
    "captureBuffer": "request captures are not kept",
    "store": "not used",
    "ui": "not used",
    "performance": "not used",
    "upstream": "not used (every /upstream request may load its model)",
    "profiles": "not supported",
    "selectors": "not supported",
    "matrix": "not supported; use groups",
}
MODEL_ACTED = frozenset(
    {
        "cmd", "cmdStop", "proxy", "checkEndpoint", "aliases", "env", "ttl", "unloadTimeout",
        "unlisted", "name", "description", "metadata", "capabilities", "concurrencyLimit",
        "sendLoadingState", "useModelName", "filters", "timeouts", "macros",
    }
)  # fmt: skip


def _command(text: str, where: str, windows: bool) -> tuple[str, ...]:
    argv = split_command(join_continuations(strip_comment_lines(text)), windows=windows)
    if not argv:
        raise ConfigError(f"{where}: is empty")
    return tuple(argv)


def parse_model(
    model_id: str, raw: Any, global_macros: Macros, *, windows: bool, warnings: list[str]
) -> SwapModel:
    at = f"models -> {model_id}"
    body = dict(mapping(raw, at))
    for key in body:
        if key not in MODEL_ACTED:
            warnings.append(f"{at} -> {key}: not acted on by llamasc (accepted, ignored)")
    own = parse_macros(body.pop("macros", None), f"{at} -> macros", [n for n, _ in global_macros])
    macros = merge_macros(global_macros, own)
    body = {k: expand(v, macros, model_id, f"{at} -> {k}") for k, v in body.items()}
    if not isinstance(body.get("cmd"), str) or not body["cmd"].strip():
        raise ConfigError(f"{at} -> cmd: is missing or empty")
    cmd = strip_comment_lines(body["cmd"])
    uses_port = "${PORT}" in cmd
    proxy = string(body.get("proxy", "http://localhost:${PORT}"), f"{at} -> proxy")
    if "${PORT}" in proxy and not uses_port:
        where = "proxy" if "proxy" in body else "proxy (default http://localhost:${PORT})"
        raise ConfigError(
            f"{at} -> {where}: uses ${{PORT}} but cmd does not (put ${{PORT}} in cmd, "
            "or give proxy the port cmd uses)"
        )
    argv = _command(cmd, f"{at} -> cmd", windows)
    if "${PID}" in " ".join(argv):
        raise ConfigError(f"{at} -> cmd: ${{PID}} is only for cmdStop")
    kind: Kind = "llama-server" if is_llama_server(argv[0]) else "opaque"
    gguf: str | None = None
    args: list[str] = []
    dropped: list[str] = []
    if kind == "llama-server":
        gguf, args, dropped = split_server_args(list(argv[1:]))
        if gguf is None:
            raise ConfigError(f"{at} -> cmd: llama-server with no -m/--model GGUF path")
    stop = body.get("cmdStop")
    cmd_stop = (
        _command(string(stop, f"{at} -> cmdStop"), f"{at} -> cmdStop", windows) if stop else ()
    )
    ttl = body.get("ttl", -1)
    ttl_s = None if ttl == -1 else num(ttl, f"{at} -> ttl", minimum=0)
    unload = body.get("unloadTimeout")
    limit = integer(body.get("concurrencyLimit", 0), f"{at} -> concurrencyLimit", minimum=0)
    loading = body.get("sendLoadingState")
    metadata = mapping(body.get("metadata"), f"{at} -> metadata")
    return SwapModel(
        id=model_id,
        kind=kind,
        argv=argv,
        cmd_stop=cmd_stop,
        proxy=proxy,
        check_endpoint=string(body.get("checkEndpoint", "/health"), f"{at} -> checkEndpoint"),
        uses_port=uses_port,
        gguf=gguf,
        args=tuple(args),
        dropped=tuple(dropped),
        env=env_list(body.get("env"), f"{at} -> env"),
        aliases=str_list(body.get("aliases"), f"{at} -> aliases"),
        ttl=ttl_s,
        unload_timeout=None if unload is None else num(unload, f"{at} -> unloadTimeout", minimum=0),
        unlisted=boolean(body.get("unlisted", False), f"{at} -> unlisted"),
        name=string(body.get("name", ""), f"{at} -> name"),
        description=string(body.get("description", ""), f"{at} -> description"),
        metadata=dict(metadata),
        capabilities=dict(mapping(body.get("capabilities"), f"{at} -> capabilities")),
        concurrency_limit=limit or None,
        send_loading_state=None
        if loading is None
        else boolean(loading, f"{at} -> sendLoadingState"),
        use_model_name=string(body.get("useModelName", ""), f"{at} -> useModelName"),
        filters=parse_filters(body.get("filters"), f"{at} -> filters"),
        timeouts=parse_timeouts(body.get("timeouts"), f"{at} -> timeouts"),
    )


def _groups(data: Mapping[str, Any], cfg: SwapConfig) -> dict[str, Any]:
    legacy = data.get("groups")
    routing = mapping(data.get("routing"), "routing")
    router = mapping(routing.get("router"), "routing -> router")
    settings = mapping(router.get("settings"), "routing -> router -> settings")
    if router.get("use", "group") != "group":
        cfg.warnings.append(
            f"routing -> router -> use: {router.get('use')!r} is not supported; "
            "groups are used (llamasc's memory-aware admission replaces the matrix)"
        )
    for key in settings:
        if key != "groups":
            cfg.warnings.append(f"routing -> router -> settings -> {key}: not acted on by llamasc")
    for key in routing:
        if key not in ("router", "scheduler"):
            cfg.warnings.append(f"routing -> {key}: not acted on by llamasc")
    if legacy is not None and settings.get("groups") is not None:
        raise ConfigError("groups: give groups or routing.router.settings.groups, not both")
    if legacy is not None:
        return dict(mapping(legacy, "groups"))
    return dict(mapping(settings.get("groups"), "routing -> router -> settings -> groups"))


def _priorities(data: Mapping[str, Any]) -> dict[str, int]:
    routing = mapping(data.get("routing"), "routing")
    sched = mapping(routing.get("scheduler"), "routing -> scheduler")
    fifo = mapping(
        mapping(sched.get("settings"), "routing -> scheduler -> settings").get("fifo"), "fifo"
    )
    at = "routing -> scheduler -> settings -> fifo -> priority"
    return {
        str(k): integer(v, f"{at} -> {k}") for k, v in mapping(fifo.get("priority"), at).items()
    }


def _peer(peer_id: str, raw: Any) -> SwapPeer:
    at = f"peers -> {peer_id}"
    body = mapping(raw, at)
    proxy = string(body.get("proxy", ""), f"{at} -> proxy")
    if not proxy.startswith(("http://", "https://")):
        raise ConfigError(f"{at} -> proxy: must be an http:// or https:// URL, got {proxy!r}")
    models = str_list(body.get("models"), f"{at} -> models")
    if not models:
        raise ConfigError(f"{at} -> models: list the models this peer serves")
    return SwapPeer(
        id=peer_id,
        proxy=proxy.rstrip("/"),
        models=models,
        api_key=string(body.get("apiKey", ""), f"{at} -> apiKey"),
        filters=parse_filters(body.get("filters"), f"{at} -> filters"),
        timeouts=parse_timeouts(body.get("timeouts"), f"{at} -> timeouts"),
    )


def _try(cfg: SwapConfig, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except ConfigError as exc:
        cfg.errors.append(exc.message)
        return None


def parse_document(
    data: Mapping[str, Any], *, source: str = "config.yaml", windows: bool | None = None
) -> SwapConfig:
    """A llama-swap config from its parsed (env-expanded) document. Never raises for a
    problem in the document: see ``errors``, ``model_errors`` and ``warnings``."""
    windows = sys.platform == "win32" if windows is None else windows
    cfg = SwapConfig(source=source)
    for key in data:
        if key in TOP_WARNED:
            cfg.warnings.append(f"{key}: not acted on by llamasc ({TOP_WARNED[key]})")
        elif key not in TOP_ACTED:
            cfg.warnings.append(f"{key}: not a llama-swap setting llamasc knows (ignored)")
    macros = _try(cfg, parse_macros, data.get("macros"), "macros")
    if macros is None:
        return cfg  # every model depends on the global macros
    models = data.get("models")
    if not isinstance(models, Mapping):
        cfg.errors.append("models: no 'models:' mapping (is this a llama-swap config?)")
        models = {}
    for raw_id, body in models.items():
        mid = str(raw_id)
        try:
            cfg.models[mid] = parse_model(mid, body, macros, windows=windows, warnings=cfg.warnings)
        except ConfigError as exc:
            cfg.errors.append(exc.message)
            cfg.model_errors[mid] = exc.message
    _aliases(cfg)
    _top(cfg, data)
    return cfg


def _aliases(cfg: SwapConfig) -> None:
    owner: dict[str, str] = {}
    for mid, m in cfg.models.items():
        by_id = [k for k in m.filters.set_params_by_id if k != mid]
        for alias in (*m.aliases, *by_id):
            where = "aliases" if alias in m.aliases else "filters -> setParamsByID"
            if alias in cfg.models or alias in cfg.model_errors:
                cfg.errors.append(f"models -> {mid} -> {where}: {alias!r} is a model id")
            elif alias in owner and owner[alias] != mid:
                cfg.errors.append(
                    f"models -> {mid} -> {where}: alias {alias!r} is also an alias of "
                    f"{owner[alias]!r}"
                )
            else:
                owner[alias] = mid
    cfg.aliases = owner


def _top(cfg: SwapConfig, data: Mapping[str, Any]) -> None:
    known = set(cfg.models) | set(cfg.model_errors)

    def opt(key: str, conv: Any, **kw: Any) -> Any:
        return None if data.get(key) is None else _try(cfg, conv, data[key], key, **kw)

    timeout = opt("healthCheckTimeout", num, minimum=0)
    cfg.health_check_timeout = None if timeout is None else max(timeout, 15.0)
    level = opt("logLevel", string)
    if level is not None and level.lower() not in ("debug", "info", "warn", "error"):
        cfg.errors.append(f"logLevel: must be debug, info, warn or error, got {level!r}")
    else:
        cfg.log_level = level
    cfg.start_port = opt("startPort", integer, minimum=1)
    ttl = opt("globalTTL", num, minimum=0)
    cfg.global_ttl = ttl
    cfg.unload_timeout = opt("unloadTimeout", num, minimum=0)
    cfg.send_loading_state = bool(opt("sendLoadingState", boolean))
    cfg.include_aliases_in_list = bool(opt("includeAliasesInList", boolean))
    keys = opt("apiKeys", str_list) or ()
    cfg.api_keys = tuple(k for k in keys if k)
    hooks = _try(cfg, mapping, data.get("hooks"), "hooks") or {}
    startup = _try(cfg, mapping, hooks.get("on_startup"), "hooks -> on_startup") or {}
    for key in (*(k for k in hooks if k != "on_startup"), *(k for k in startup if k != "preload")):
        cfg.warnings.append(f"hooks -> {key}: not acted on by llamasc")
    preload = _try(cfg, str_list, startup.get("preload"), "hooks -> on_startup -> preload")
    for name in preload or ():
        if cfg.resolve(name) not in known:
            cfg.errors.append(f"hooks -> on_startup -> preload: unknown model {name!r}")
    cfg.preload = tuple(cfg.resolve(n) for n in preload or ())
    groups = _try(cfg, _groups, data, cfg) or {}
    member_of: dict[str, str] = {}
    for name, raw in groups.items():
        at = f"groups -> {name}"
        body = _try(cfg, mapping, raw, at) or {}
        members = _try(cfg, str_list, body.get("members"), f"{at} -> members") or ()
        for m in members:
            if m not in known:
                cfg.errors.append(f"{at} -> members: unknown model {m!r}")
            elif m in member_of:
                cfg.errors.append(f"{at} -> members: {m!r} is also in group {member_of[m]!r}")
            member_of.setdefault(m, name)
        flags = {k: _try(cfg, boolean, body.get(k, d), f"{at} -> {k}") for k, d in (
            ("swap", True), ("exclusive", True), ("persistent", False))}  # fmt: skip
        cfg.groups[str(name)] = SwapGroup(tuple(members), **{k: bool(v) for k, v in flags.items()})
    prio = _try(cfg, _priorities, data) or {}
    for mid, value in prio.items():
        if cfg.resolve(mid) not in known:
            cfg.errors.append(
                f"routing -> scheduler -> settings -> fifo -> priority: unknown model {mid!r}"
            )
        elif cfg.resolve(mid) in cfg.models:
            m = cfg.models[cfg.resolve(mid)]
            cfg.models[m.id] = _replace(m, priority=value)
    peers = _try(cfg, mapping, data.get("peers"), "peers") or {}
    for pid, raw in peers.items():
        peer = _try(cfg, _peer, str(pid), raw)
        if peer is not None:
            cfg.peers[str(pid)] = peer


def _replace(m: SwapModel, **changes: Any) -> SwapModel:
    import dataclasses

    return dataclasses.replace(m, **changes)


def is_llama_swap(data: Mapping[str, Any]) -> bool:
    """A llama-swap config: ``models:`` entries with ``cmd``, or any llama-swap top-level key."""
    models = data.get("models")
    if isinstance(models, Mapping) and any(
        isinstance(b, Mapping) and "cmd" in b for b in models.values()
    ):
        return True
    swap_only = (TOP_ACTED | set(TOP_WARNED)) - {"models", "groups", "macros"}
    return any(k in swap_only for k in data)


__all__ = ["is_llama_swap", "parse_document", "parse_model"]
