"""A llama-swap config as llamasc's own settings (the dict a native config file would give).

llama-server models become ordinary models: ``-m`` is the GGUF, the rest of ``cmd`` the
model's operator ``args`` (``--host``/``--port``/``--alias``/``--api-key`` are the pool's).
The scheduling keys map onto the native scheduling fields (``ttl``, ``priority``,
``concurrency``, ``send_loading_state``, ``preload``, ``groups``); the listing and request
keys onto the native per-model fields of :mod:`llamasc.config.swapfields`, and ``peers``
onto native peers. Models whose ``cmd`` runs another program become opaque upstreams
(``opaque``: the argv, ``cmdStop``, ``proxy``, ``checkEndpoint``, ``unloadTimeout``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llamasc.config.llamaswap.model import SwapConfig, SwapModel

_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "error": "ERROR"}


def _served_as(m: SwapModel, base: Path) -> dict[str, Any]:
    """What runs: a GGUF and operator args, or (another program) the opaque command."""
    if m.kind == "opaque":
        opaque: dict[str, Any] = {
            "argv": list(m.argv),
            "cmd_stop": list(m.cmd_stop),
            "proxy": m.proxy,
            "check_endpoint": m.check_endpoint,
        }
        if m.unload_timeout is not None:
            opaque["unload_timeout"] = m.unload_timeout
        return {"opaque": opaque}
    assert m.gguf is not None
    path = Path(m.gguf).expanduser()
    return {"path": str(path if path.is_absolute() else base / path), "args": list(m.args)}


def _model(m: SwapModel, cfg: SwapConfig, base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        **_served_as(m, base),
        "env": dict(m.env),
        "aliases": list(m.aliases),
        "unlisted": m.unlisted,
        "name": m.name,
        "description": m.description,
        "metadata": dict(m.metadata),
        "capabilities": dict(m.capabilities),
        "use_model_name": m.use_model_name,
        "filters": {
            "strip_params": list(m.filters.strip_params),
            "set_params": dict(m.filters.set_params),
            "set_params_by_id": {k: dict(v) for k, v in m.filters.set_params_by_id.items()},
        },
        "priority": m.priority,
    }
    ttl = cfg.global_ttl if m.ttl is None else m.ttl
    if ttl is not None:
        out["ttl"] = ttl
    if m.concurrency_limit is not None:
        out["concurrency"] = m.concurrency_limit
    loading = cfg.send_loading_state if m.send_loading_state is None else m.send_loading_state
    out["send_loading_state"] = loading
    return out


def to_native(cfg: SwapConfig, *, base: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """``(settings dict, warnings)`` for a parsed config with no errors.

    Relative GGUF paths resolve against ``base`` (llama-swap runs ``cmd`` in its working
    directory; default: the current one).
    """
    base = Path.cwd() if base is None else base
    warnings = list(cfg.warnings)
    models: dict[str, Any] = {}
    for mid, m in cfg.models.items():
        if m.dropped:
            warnings.append(
                f"models -> {mid} -> cmd: {' '.join(m.dropped)} dropped (llamasc sets the "
                "host, port, alias and auth of its children)"
            )
        models[mid] = _model(m, cfg, base)
        for key in sorted(m.timeouts):
            warnings.append(
                f"models -> {mid} -> timeouts -> {key}: not acted on by llamasc (its upstream "
                "timeouts are the daemon's: --upstream-first-byte-timeout, "
                "--upstream-idle-timeout)"
            )
    data: dict[str, Any] = {"models": models}
    peers: dict[str, dict[str, Any]] = {}
    for pid, p in cfg.peers.items():
        peers[pid] = {
            "proxy": p.proxy,
            "models": list(p.models),
            "api_key": p.api_key,
            "filters": {
                "strip_params": list(p.filters.strip_params),
                "set_params": dict(p.filters.set_params),
                "set_params_by_id": {k: dict(v) for k, v in p.filters.set_params_by_id.items()},
            },
        }
        if "connect" in p.timeouts and p.timeouts["connect"] > 0:
            peers[pid]["connect_timeout"] = p.timeouts["connect"]
        for key in sorted(set(p.timeouts) - {"connect"}):
            warnings.append(f"peers -> {pid} -> timeouts -> {key}: not acted on by llamasc")
    if peers:
        data["peers"] = peers
    if cfg.health_check_timeout is not None:
        data["health_timeout"] = cfg.health_check_timeout
    if cfg.log_level is not None:
        data["log_level"] = _LEVELS[cfg.log_level.lower()]
    if cfg.global_ttl is not None:
        data["ttl"] = cfg.global_ttl
    if cfg.unload_timeout is not None:
        data["stop_grace"] = cfg.unload_timeout
    if cfg.start_port is not None:
        data["port_range"] = (cfg.start_port, min(cfg.start_port + 99, 65535))
    if cfg.api_keys:
        data["api_keys"] = list(cfg.api_keys)
    if cfg.include_aliases_in_list:
        data["include_aliases_in_list"] = True
    served = set(models)
    data["preload"] = [p for p in cfg.preload if p in served]
    groups = {}
    for name, g in cfg.groups.items():
        members = [m for m in g.members if m in served]
        if members:
            groups[name] = {
                "members": members,
                "swap": g.swap,
                "exclusive": g.exclusive,
                "persistent": g.persistent,
            }
    data["groups"] = groups
    return data, warnings


__all__ = ["to_native"]
