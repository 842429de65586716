"""The models a sweep runs, and the split of production flags into ours and theirs.

The bench owns where a server listens (``--host``/``--port``), which file it loads
(``-m``), its context (``--ctx-size``, fixed for a fair comparison), its slots
(``--parallel``), auth (``--api-key*``: the server only listens on the host's loopback) and
every speculative-decoding flag (the arms decide those). Everything else in the production
command line is kept as is, in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llamasc.errors import ConfigError

OWNED_CANONICAL = frozenset(
    {"--host", "--port", "--ctx-size", "--parallel", "--api-key", "--api-key-file"}
)
MODEL_CANONICAL = "--model"


@dataclass(frozen=True)
class BenchModel:
    """One model to sweep: its GGUF path *on the bench host* and its production flags."""

    id: str
    path: str
    flags: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    binary: str | None = None
    source: str = "command line"


def _is_speculative(canonical: str, notes: str) -> bool:
    return canonical.startswith("--spec-") or "[speculative]" in notes


def split_production_flags(
    tokens: Sequence[str],
) -> tuple[str | None, list[str], list[str]]:
    """``(model path, kept flags, dropped flags)`` from a production command line's flags
    (walked by the config reader's :func:`~llamasc.config.llamaswap.command.flag_groups`)."""
    from llamasc.config.llamaswap.command import flag_groups

    path: str | None = None
    kept: list[str] = []
    dropped: list[str] = []
    for g in flag_groups(tokens):
        if g.canonical == MODEL_CANONICAL:
            if g.values:
                path = g.values[-1]
        elif g.canonical in OWNED_CANONICAL or _is_speculative(g.canonical, g.notes):
            dropped.extend(g.tokens)
        else:
            kept.extend(g.tokens)
    return path, kept, dropped


def parse_model_option(text: str) -> BenchModel:
    """``--model ID=PATH`` (the path is on the bench host)."""
    model_id, eq, path = text.partition("=")
    model_id, path = model_id.strip(), path.strip()
    if not eq or not model_id or not path:
        raise ConfigError(f"--model expects ID=PATH, got {text!r}")
    return BenchModel(id=model_id, path=path)


def select_models(models: Sequence[BenchModel], wanted: Sequence[str]) -> list[BenchModel]:
    """Keep ``wanted`` (in that order); unknown ids are an error."""
    if not wanted:
        return list(models)
    by_id = {m.id: m for m in models}
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        known = ", ".join(by_id) or "none"
        raise ConfigError(f"unknown model(s) {', '.join(unknown)} (models: {known})")
    return [by_id[w] for w in dict.fromkeys(wanted)]


__all__ = ["BenchModel", "parse_model_option", "select_models", "split_production_flags"]
