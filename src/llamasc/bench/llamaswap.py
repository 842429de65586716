"""The bench's view of a llama-swap ``config.yaml``: its llama-server models and their
production flags, read by the one llama-swap reader (:mod:`llamasc.config.llamaswap`).

A model the bench cannot run (another program in ``cmd``, no ``-m``, a bad macro) is kept
with the reason, and only becomes an error if it is selected.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llamasc.bench.models import BenchModel, split_production_flags
from llamasc.config.llamaswap import (
    join_continuations,
    parse_text,
    split_command,
    strip_comment_lines,
)
from llamasc.config.llamaswap.macros import expand
from llamasc.errors import ConfigError

log = logging.getLogger(__name__)

PORT_PLACEHOLDER = "0"  # --port is the bench's own; the value is dropped with the flag


@dataclass
class SwapConfig:
    """The benchable models of a llama-swap config, and why the others are not."""

    source: str
    models: dict[str, BenchModel] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def ids(self) -> list[str]:
        return sorted({*self.models, *self.problems})

    def select(self, wanted: Sequence[str] | None = None) -> list[BenchModel]:
        """The models to bench: ``wanted`` ids or aliases, or every benchable model."""
        if not wanted:
            if not self.models:
                raise ConfigError(
                    f"{self.source}: no model can be benched",
                    details=[f"{mid}: {why}" for mid, why in sorted(self.problems.items())],
                )
            return [self.models[m] for m in sorted(self.models)]
        chosen: list[BenchModel] = []
        for name in wanted:
            mid = self.aliases.get(name, name)
            if mid in self.problems:
                raise ConfigError(f"{self.source}: model {mid!r}: {self.problems[mid]}")
            if mid not in self.models:
                known = ", ".join(self.ids()) or "none"
                raise ConfigError(f"{self.source}: no model {name!r} (models: {known})")
            if self.models[mid] not in chosen:
                chosen.append(self.models[mid])
        return chosen


def expand_cmd(
    model_id: str, cmd: str, macros: Sequence[tuple[str, object]], environ: Mapping[str, str]
) -> str:
    """One model's ``cmd`` expanded by llama-swap's rules, ``${PORT}`` as the placeholder."""
    from llamasc.config.llamaswap.macros import substitute_env

    text = substitute_env(strip_comment_lines(cmd), environ, "cmd")
    text = expand(text, list(macros), model_id, "cmd")
    return str(text).replace("${PORT}", PORT_PLACEHOLDER)


def parse_llama_swap(
    text: str,
    *,
    source: str = "config.yaml",
    environ: Mapping[str, str] | None = None,
    windows: bool = False,
) -> SwapConfig:
    """Parse a llama-swap config's text. ``environ`` serves ``${env.NAME}`` (the host's)."""
    swap = parse_text(text, source=source, environ=environ or {}, windows=windows)
    if swap.errors and not swap.models and not swap.model_errors:
        raise ConfigError(f"{source}: {swap.errors[0]}", details=swap.errors[1:])
    config = SwapConfig(source=source, aliases=dict(swap.aliases))
    for mid, why in swap.model_errors.items():
        config.problems[mid] = why
    for mid, m in swap.models.items():
        if m.kind != "llama-server":
            config.problems[mid] = (
                f"cmd runs {m.argv[0]!r}, not llama-server (use --model ID=PATH instead)"
            )
            continue
        argv = [a.replace("${PORT}", PORT_PLACEHOLDER) for a in m.argv]
        path, flags, dropped = split_production_flags(argv[1:])
        assert path is not None  # the reader refuses a llama-server cmd without -m
        config.models[mid] = BenchModel(
            id=mid,
            path=path,
            flags=tuple(flags),
            env=dict(m.env),
            dropped=tuple(dropped),
            binary=argv[0],
            source="llama-swap",
        )
    return config


__all__ = [
    "SwapConfig",
    "expand_cmd",
    "join_continuations",
    "parse_llama_swap",
    "split_command",
    "strip_comment_lines",
]
