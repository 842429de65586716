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


def _looks_like_flag(token: str) -> bool:
    return len(token) >= 2 and token[0] == "-" and not (token[1].isdigit() or token[1] == ".")


def _is_speculative(canonical: str, notes: str) -> bool:
    return canonical.startswith("--spec-") or "[speculative]" in notes


def split_production_flags(
    tokens: Sequence[str],
) -> tuple[str | None, list[str], list[str]]:
    """``(model path, kept flags, dropped flags)`` from a production command line's flags.

    Value counts come from the llama-server flag table; an unknown flag takes the next token
    as its value unless that looks like a flag, as llama.cpp's own parser would.
    """
    from llamasc.flags import load_default_table

    table = load_default_table()
    path: str | None = None
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, eq, attached = token.partition("=") if token.startswith("--") else (token, "", "")
        found = table.lookup(name) if _looks_like_flag(name) else None
        if found is not None:
            spec, _negative = found
            arity = 0 if eq else spec.arity
            canonical, notes = spec.canonical, spec.notes
        else:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            arity = 0 if eq or nxt is None or _looks_like_flag(nxt) else 1
            canonical, notes = name, ""
        group = list(tokens[i : i + 1 + arity])
        values = [attached] if eq else group[1:]
        i += 1 + arity
        if canonical == MODEL_CANONICAL:
            if values:
                path = values[-1]
            continue
        if canonical in OWNED_CANONICAL or _is_speculative(canonical, notes):
            dropped.extend(group)
            continue
        kept.extend(group)
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
