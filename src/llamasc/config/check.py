"""``llamasc config check``: what a config file means to llamasc, and every problem in it."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from llamasc.errors import ConfigError


@dataclass
class CheckedModel:
    id: str
    kind: str  # "llama-server", "opaque", "native" or "error"
    command: str = ""
    aliases: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckReport:
    """What ``config check`` found: ``errors`` empty means ``serve`` would accept it."""

    source: str
    flavour: str  # "llama-swap" or "llamasc"
    models: list[CheckedModel] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    preload: list[str] = field(default_factory=list)
    peers: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def operator_problems(args: tuple[str, ...]) -> list[str]:
    """What the operator policy (the one BASE_ARGS passes) says against a model's args."""
    if not args:
        return []
    from llamasc.flags import FlagPolicy, validate_flags

    return list(validate_flags(list(args), FlagPolicy.operator()).problems)


def _check_swap(
    path: str | None, config_dir: str | None, environ: dict[str, str] | None
) -> CheckReport:
    from llamasc.config.llamaswap import parse_document, read_sources
    from llamasc.config.llamaswap.native import to_native

    doc, names = read_sources(path, config_dir, environ)
    cfg = parse_document(doc, source=", ".join(names))
    report = CheckReport(source=", ".join(names), flavour="llama-swap", errors=list(cfg.errors))
    for mid, m in cfg.models.items():
        details: dict[str, Any] = {}
        if m.kind == "llama-server":
            problems = operator_problems(m.args)
            if problems:
                report.errors.append(f"models -> {mid} -> cmd: " + "; ".join(problems))
            details["gguf"] = m.gguf
            details["operator args"] = " ".join(shlex.quote(a) for a in m.args)
        else:
            details["proxy"] = m.proxy
            details["checkEndpoint"] = m.check_endpoint
            if m.cmd_stop:
                details["cmdStop"] = " ".join(shlex.quote(a) for a in m.cmd_stop)
            if m.unload_timeout is not None:
                details["unloadTimeout"] = m.unload_timeout
        for key, value in (
            ("ttl", m.ttl),
            ("env", dict(m.env) or None),
            ("unlisted", m.unlisted or None),
            ("name", m.name or None),
            ("concurrencyLimit", m.concurrency_limit),
            ("filters", m.filters or None),
        ):
            if value is not None:
                details[key] = value
        command = " ".join(shlex.quote(a) for a in m.argv)
        report.models.append(CheckedModel(mid, m.kind, command, m.aliases, details))
    for mid, why in cfg.model_errors.items():
        report.models.append(CheckedModel(mid, "error", details={"problem": why}))
    report.groups = {n: list(g.members) for n, g in cfg.groups.items()}
    report.preload = list(cfg.preload)
    report.peers = {p.id: f"{p.proxy} ({', '.join(p.models)})" for p in cfg.peers.values()}
    if not report.errors:
        _, report.warnings = to_native(cfg)
    else:
        report.warnings = list(cfg.warnings)
    return report


def check_config(
    path: str | os.PathLike[str] | None,
    config_dir: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
) -> CheckReport:
    """Read ``path`` (a llama-swap config.yaml or a llamasc TOML/YAML) as ``serve`` would.

    Problems in the file are in the report; only an unreadable file raises ConfigError.
    """
    from llamasc.config.llamaswap import is_llama_swap
    from llamasc.config.settings import parse_config_text, read_config_file, settings_from_sources

    p = None if path is None else str(path)
    if config_dir is not None or p is None:
        return _check_swap(p, None if config_dir is None else str(config_dir), environ)
    if p.lower().endswith((".yaml", ".yml")):
        try:
            with open(p, encoding="utf-8-sig") as fh:
                data = parse_config_text(fh.read(), fmt="yaml", source=p)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
        if is_llama_swap(data):
            return _check_swap(p, None, environ)
    report = CheckReport(source=p, flavour="llamasc")
    try:
        settings = settings_from_sources(cli={}, env={}, file_data=read_config_file(p), file_name=p)
    except ConfigError as exc:
        report.errors = [exc.message, *exc.details]
        return report
    for mid, m in settings.models.items():
        details: dict[str, Any] = {"gguf": str(m.path) if m.path else "(discovered)"}
        if m.args:
            details["operator args"] = " ".join(m.args)
        report.models.append(CheckedModel(mid, "native", aliases=m.aliases, details=details))
    report.groups = {n: list(g.members) for n, g in settings.groups.items()}
    report.preload = list(settings.preload)
    return report


__all__ = ["CheckReport", "CheckedModel", "check_config"]
