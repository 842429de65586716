"""The operator arguments a model brings from discovery, merged under the client's flags.

- ``--mmproj PATH`` when discovery paired a projector (or the config chose one);
- ``--embedding`` for an embedding model, ``--rerank`` for a reranker, as the GGUF says;
- ``--ctx-size N`` when the base arguments ask for more context than the model was trained
  for (``-c 0`` already means "the trained length", so it is left alone).

These are operator policy (the client never chooses a path): the base args are merged
with them first, then the client's validated flags on top, so ``X-Agent-Flags: -c 4096`` still
wins. Pure functions of the entry and the base args.
"""

from __future__ import annotations

from collections.abc import Sequence

from llamasc.config.models import ModelEntry
from llamasc.flags import merge_flags

_CTX = "--ctx-size"


def _ctx_of(canonical: Sequence[str]) -> int | None:
    for i, tok in enumerate(canonical[:-1]):
        if tok == _CTX:
            try:
                return int(canonical[i + 1])
            except ValueError:
                return None
    return None


def model_defaults(entry: ModelEntry, base: Sequence[str]) -> tuple[str, ...]:
    """The flags discovery adds for ``entry`` given the (canonical) base args."""
    extra: list[str] = []
    if entry.mmproj is not None:
        extra += ["--mmproj", str(entry.mmproj)]
    meta = entry.meta
    if meta is None:
        return tuple(extra)
    if meta.kind == "reranker":
        extra.append("--rerank")
    elif meta.kind == "embedding":
        extra.append("--embedding")
    trained = meta.context_length
    ctx = _ctx_of(base)
    if trained and ctx and ctx > trained:
        extra += [_CTX, str(trained)]
    return tuple(extra)


def model_base_args(entry: ModelEntry, base_args: Sequence[str]) -> tuple[str, ...]:
    """``base_args`` with ``entry``'s defaults merged over them, canonical."""
    base = merge_flags(base_args, ())
    extra = model_defaults(entry, base)
    return merge_flags(base, extra) if extra else base


__all__ = ["model_base_args", "model_defaults"]
