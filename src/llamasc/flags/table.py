"""The llama-server flag table: every spelling, its arity, value kind and security class.

The shipped table (``data/llama-server-flags.tsv``) was read from llama.cpp's ``common/arg.cpp``
(build b11434). :func:`llamasc.flags.table_from_help` narrows it to what one binary accepts.

Security classes (a flag may carry several): ``A`` reads/writes local paths, ``B`` network,
downloads or process spawning, ``C`` must be owned by the pool, ``D`` resource exhaustion,
``E`` harmless sampling/performance, ``X`` prints and exits, ``R`` removed (llama-server throws).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

from llamasc.errors import ConfigError

log = logging.getLogger(__name__)

TSV_RESOURCE = "data/llama-server-flags.tsv"

# Handlers that append instead of overwrite (arg.cpp push_back/insert): repeating them adds
# entries, so their order matters and the last one does not "win".
REPEATABLE: frozenset[str] = frozenset(
    {
        "--lora",
        "--lora-scaled",
        "--control-vector",
        "--control-vector-scaled",
        "--reverse-prompt",
        "--dry-sequence-breaker",
        "--logit-bias",
        "--alias",
        "--tags",
        "--spec-type",
        "--override-kv",
        "--override-tensor",
        "--spec-draft-override-tensor",
        "--api-key",
    }
)

# Flags that no longer exist in current llama-server but that llama-sidecar users still have in
# BASE_ARGS. The TSV does not list them (they are gone from arg.cpp), so we add them as removed.
_LEGACY_REMOVED: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("--mmap",), ("--no-mmap",), "removed; use --load-mode: -lm none, mmap, mlock or mmap+mlock"),
    (("--mlock",), (), "removed; use --load-mode: -lm mmap+mlock or mlock"),
)

_NEG_RE = re.compile(r"negative forms?:\s*([^;]+)")


def normalize_name(name: str) -> str:
    """llama.cpp folds ``_`` to ``-`` in double-dash names only (arg.cpp)."""
    return name.replace("_", "-") if name.startswith("--") else name


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """One llama-server option with all its spellings.

    ``canonical`` is the first double-dash positive spelling (``-c`` -> ``--ctx-size``);
    ``negatives`` holds the negative spellings of a bool pair (``--no-jinja``).
    """

    canonical: str
    names: tuple[str, ...]
    negatives: tuple[str, ...] = ()
    arity: int = 0
    value_kind: str = "flag"
    enum_values: str = ""
    env: tuple[str, ...] = ()
    notes: str = ""
    server: bool = True
    classes: frozenset[str] = frozenset()
    repeatable: bool = False
    #: False when the spec comes only from a binary's --help (kind unknown to llamasc).
    known: bool = True
    #: False when a binary was consulted and does not accept this option.
    in_binary: bool = True

    @property
    def removed(self) -> bool:
        return "R" in self.classes

    @property
    def negative_canonical(self) -> str | None:
        """The spelling used for the negative form of a bool pair in canonical output."""
        if not self.negatives:
            return None
        longs = [n for n in self.negatives if n.startswith("--")]
        return (longs or list(self.negatives))[0]

    def spelling(self, negative: bool) -> str:
        """The canonical spelling of this flag (its negative form if ``negative``)."""
        if negative:
            neg = self.negative_canonical
            if neg is None:
                raise ValueError(f"{self.canonical} has no negative form")
            return neg
        return self.canonical


def _canonical_of(positives: Iterable[str]) -> str:
    pos = list(positives)
    longs = [n for n in pos if n.startswith("--")]
    return (longs or pos)[0]


class FlagTable:
    """Lookup of flag spellings to :class:`FlagSpec` (names normalised like llama.cpp)."""

    def __init__(
        self,
        specs: Iterable[FlagSpec],
        *,
        source: str = "llamasc's flag table",
        binary: str | None = None,
    ) -> None:
        self.source = source
        #: the binary whose --help built this table, if any
        self.binary = binary
        self._specs: tuple[FlagSpec, ...] = tuple(specs)
        self._by_name: dict[str, tuple[FlagSpec, bool]] = {}
        for spec in self._specs:
            for name in spec.names:
                key = normalize_name(name)
                current = self._by_name.get(key)
                # A server option wins over a same-named option of another llama.cpp tool.
                if current is not None and (current[0].server or not spec.server):
                    continue
                self._by_name[key] = (spec, name in spec.negatives)
        self._server_names = tuple(n for s in self._specs if s.server for n in s.names)

    def __iter__(self) -> Iterator[FlagSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._by_name

    def __repr__(self) -> str:
        return f"FlagTable({len(self._specs)} options from {self.source})"

    def lookup(self, name: str) -> tuple[FlagSpec, bool] | None:
        """``(spec, is_negative_spelling)`` for any spelling, or None if unknown."""
        return self._by_name.get(normalize_name(name))

    def get(self, name: str) -> FlagSpec | None:
        """The spec for any spelling (alias, underscore or negative form), or None."""
        hit = self.lookup(name)
        return hit[0] if hit else None

    def canonical_name(self, name: str) -> str | None:
        """Canonical name of any spelling (negative spellings map to the positive name)."""
        spec = self.get(name)
        return spec.canonical if spec else None

    def server_specs(self) -> list[FlagSpec]:
        """Options llama-server accepts (other llama.cpp tools' options left out)."""
        return [s for s in self._specs if s.server]

    def server_names(self) -> list[str]:
        """Every spelling llama-server accepts, in table order."""
        return list(self._server_names)

    @property
    def missing_from_binary(self) -> list[str]:
        """Canonical names llamasc knows but the consulted binary does not accept."""
        return [s.canonical for s in self.server_specs() if not s.in_binary and not s.removed]

    @property
    def unknown_to_llamasc(self) -> list[str]:
        """Canonical names the consulted binary accepts but llamasc's table lacks."""
        return [s.canonical for s in self._specs if not s.known]


def _split(cell: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in cell.split(",") if p.strip() and p.strip() != "-")


def _row_to_spec(row: dict[str, str]) -> FlagSpec | None:
    names = _split(row["names"])
    if not names or not names[0].startswith("-"):
        return None  # router preset keys (INI only) are not command-line flags
    notes = row.get("notes", "")
    neg_match = _NEG_RE.search(notes)
    negatives = tuple(n for n in neg_match.group(1).split() if n in names) if neg_match else ()
    takes = row["takes_value"].strip()
    arity = 2 if takes.startswith("yes(2") else (1 if takes == "yes" else 0)
    canonical = _canonical_of(n for n in names if n not in negatives)
    classes = frozenset(c for c in row["security_class"].split(",") if c and c != "n/a")
    return FlagSpec(
        canonical=canonical,
        names=names,
        negatives=negatives,
        arity=arity,
        value_kind=row["value_kind"].strip(),
        enum_values=row.get("enum_values", "").strip(),
        env=_split(row.get("env", "")),
        notes=notes,
        server=row["applies_to_server"].strip() == "yes",
        classes=classes,
        repeatable=canonical in REPEATABLE,
    )


def parse_table_tsv(text: str, *, source: str = "llamasc's flag table") -> FlagTable:
    """Build a table from the TSV text (columns as in ``llama-server-flags.tsv``)."""
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    required = {"names", "takes_value", "value_kind", "applies_to_server", "security_class"}
    if reader.fieldnames is None or not required <= set(reader.fieldnames):
        raise ConfigError(f"flag table {source} lacks columns {sorted(required)}")
    specs = [s for s in (_row_to_spec(r) for r in reader) if s is not None]
    known = {n for s in specs for n in s.names}
    for positives, negatives, why in _LEGACY_REMOVED:
        if known.isdisjoint(positives + negatives):
            specs.append(
                FlagSpec(
                    canonical=positives[0],
                    names=positives + negatives,
                    negatives=negatives,
                    value_kind="flag",
                    notes=f"REMOVED: {why}",
                    classes=frozenset({"R"}),
                )
            )
    return FlagTable(specs, source=source)


@cache
def load_default_table() -> FlagTable:
    """The table shipped with llamasc (cached; safe to share, it is immutable)."""
    text = resources.files("llamasc.flags").joinpath(TSV_RESOURCE).read_text(encoding="utf-8")
    return parse_table_tsv(text)


__all__ = [
    "REPEATABLE",
    "FlagSpec",
    "FlagTable",
    "load_default_table",
    "normalize_name",
    "parse_table_tsv",
]
