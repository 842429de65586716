"""The canonical form of a flag list, merging flag lists, and the sidecar key.

Canonical form: every alias becomes the canonical long name (``-c`` -> ``--ctx-size``,
``--n_gpu_layers`` -> ``--gpu-layers``), ``--flag=value`` becomes two tokens, and:

* scalar flags: the last occurrence wins; they are sorted by canonical name, so their order
  in the input does not matter;
* bool pairs count as one name and keep their last spelling (``--jinja --no-jinja`` ->
  ``--no-jinja``); plain switches appear once;
* repeatable flags (``--lora``, ``--spec-type``, ``-r`` ...) keep every occurrence in input
  order, after the scalars, because llama-server appends them.

Values are kept verbatim. The form is idempotent: canonicalising it again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from llamasc.errors import FlagError
from llamasc.flags.table import FlagTable, load_default_table
from llamasc.flags.tokens import parse_flag_input, problems_message
from llamasc.flags.walk import Occurrence, walk


@dataclass
class _Entries:
    scalars: dict[str, tuple[str, ...]] = field(default_factory=dict)
    repeated: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def add(self, occ: Occurrence) -> None:
        spec = occ.spec
        spelling = spec.spelling(occ.negative) if spec.negatives else spec.canonical
        if spec.repeatable:
            self.repeated.append((spec.canonical, (spelling, *occ.values)))
        else:
            self.scalars[spec.canonical] = (spelling, *occ.values)

    def names(self) -> set[str]:
        return set(self.scalars) | {name for name, _ in self.repeated}

    def tokens(self) -> tuple[str, ...]:
        out: list[str] = []
        for name in sorted(self.scalars):
            out.extend(self.scalars[name])
        for _, toks in self.repeated:
            out.extend(toks)
        return tuple(out)


def build_canonical(occurrences: Sequence[Occurrence]) -> tuple[str, ...]:
    """Canonical tokens of already-walked, accepted occurrences."""
    entries = _Entries()
    for occ in occurrences:
        entries.add(occ)
    return entries.tokens()


def _entries(tokens: str | Sequence[str], table: FlagTable) -> _Entries:
    toks = parse_flag_input(tokens) if isinstance(tokens, str) else list(tokens)
    occurrences, strays = walk(toks, table)
    problems = [f"{s.token!r}: {s.reason}" for s in strays]
    problems += [f"{o.raw}: {o.error}" for o in occurrences if o.error]
    if problems:
        raise FlagError(problems_message(len(problems)), details=problems)
    entries = _Entries()
    for occ in occurrences:
        entries.add(occ)
    return entries


def canonicalize(tokens: str | Sequence[str], table: FlagTable | None = None) -> tuple[str, ...]:
    """The canonical form of ``tokens`` (see the module docstring).

    Only the structure is checked (known flags, values present): policy and value ranges
    are :func:`validate_flags`'s job. Raises :class:`FlagError` on unparseable tokens.
    """
    return _entries(tokens, table or load_default_table()).tokens()


def merge_flags(
    base: str | Sequence[str], user: str | Sequence[str], table: FlagTable | None = None
) -> tuple[str, ...]:
    """``base`` overridden by ``user``, in canonical form.

    A user flag replaces the base flag with the same canonical name, whatever spelling either
    used (a bool pair is one name: user ``--no-jinja`` replaces base ``--jinja``). For a
    repeatable flag, the user's occurrences replace all of the base's.
    """
    table = table or load_default_table()
    merged = _entries(base, table)
    over = _entries(user, table)
    replaced = over.names()
    merged.scalars.update(over.scalars)
    merged.repeated = [r for r in merged.repeated if r[0] not in replaced] + over.repeated
    return merged.tokens()


def sidecar_key(model_id: str, canonical: Sequence[str]) -> str:
    """sha256 hex of (model id, canonical flags), encoded unambiguously as compact JSON.

    ``canonical`` must already be canonical (``Validation.canonical``, ``canonicalize`` or
    ``merge_flags``) for equal flag sets to share a key.
    """
    payload = json.dumps([model_id, list(canonical)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


__all__ = ["build_canonical", "canonicalize", "merge_flags", "sidecar_key"]
