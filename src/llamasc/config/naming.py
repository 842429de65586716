"""What a GGUF's file name says: split part, quantisation tag, projector or draft, its id.

Pure functions of names, so every rule is tested without files. The conventions are
llama.cpp's (``-00001-of-00003`` split parts, ``mmproj`` projectors, ``mtp-``/``eagle3-``/
``dflash-``/``dspark-`` speculative drafts, a ``-Q4_K_M``/``.Q4_1`` quant tag at the end of the
name) plus ``draft-`` for drafts named as such.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})$", re.IGNORECASE)
# a quantisation (or float type) tag at the end of a name, after "-", "." or "_"
_QUANT = re.compile(
    r"[-._](?P<tag>(?:U?I?Q\d(?:_[A-Z0-9]+)*(?:_[KSML]+)?)|(?:TQ\d_\d)|(?:MXFP4(?:_MOE)?)"
    r"|(?:NVFP4)|(?:B?F(?:P)?(?:16|32|64))|(?:E\dM\d)|(?:BF16))$",
    re.IGNORECASE,
)
DRAFT_PREFIXES = ("mtp-", "eagle3-", "dflash-", "dspark-", "draft-")
# projector preference when a folder holds several: the router PR's order, then the rest
_PROJECTOR_RANK = {"BF16": 0, "F16": 1, "FP16": 1, "F32": 2, "FP32": 2}


@dataclass(frozen=True)
class SplitName:
    """``Model-Q4_K_M-00002-of-00003`` -> prefix ``Model-Q4_K_M``, part 2 of 3."""

    prefix: str
    no: int = 1
    count: int = 1

    def part_name(self, no: int, suffix: str = ".gguf") -> str:
        return f"{self.prefix}-{no:05d}-of-{self.count:05d}{suffix}"


def split_name(stem: str) -> SplitName:
    m = _SPLIT.match(stem)
    if m is None:
        return SplitName(stem)
    return SplitName(m["prefix"], int(m["no"]), int(m["count"]))


def quant_tag(prefix: str) -> tuple[str, str | None]:
    """``Qwen3-8B-Q4_K_M`` -> (``Qwen3-8B``, ``Q4_K_M``); no tag -> (prefix, None)."""
    m = _QUANT.search(prefix)
    if m is None or m.start() == 0:
        return prefix, None
    return prefix[: m.start()], m["tag"].upper()


def is_projector_name(name: str) -> bool:
    return "mmproj" in name.lower()


def is_draft_name(name: str) -> bool:
    return name.lower().startswith(DRAFT_PREFIXES)


def model_id(stem: str, file_type: str | None = None) -> str:
    """The readable id of a model file: ``qwen3-vl-32b-instruct:q4_k_m``.

    The quant comes from the name, else from the metadata's file type; split suffixes go.
    """
    base, tag = quant_tag(split_name(stem).prefix)
    tag = tag or (file_type.upper() if file_type else None)
    base = base.strip("-._ ").lower() or stem.lower()
    return f"{base}:{tag.lower()}" if tag else base


def hf_model_id(repo: str, stem: str) -> str:
    """llama.cpp's router id of a cached file: ``owner/repo:Q4_K_M`` (tag as it spells it)."""
    _, tag = quant_tag(split_name(stem).prefix)
    return f"{repo}:{tag}" if tag else repo


def projector_rank(stem: str, file_type: str | None = None) -> tuple[int, str]:
    """Sort key of projectors: BF16, then F16, then F32, then anything else, then by name."""
    _, tag = quant_tag(stem)
    tag = tag or (file_type.upper() if file_type else "")
    return (_PROJECTOR_RANK.get(tag, len(_PROJECTOR_RANK)), stem.lower())


def best_projector(stems: Sequence[tuple[str, str | None]]) -> int | None:
    """Index of the preferred projector among (stem, file_type) pairs, or None if none."""
    if not stems:
        return None
    return min(range(len(stems)), key=lambda i: projector_rank(*stems[i]))


def resolve_ids(
    wanted: Sequence[Sequence[str]], taken: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """Give each candidate a unique id from its list of preferences (plain id first, then
    tie-breakers). Candidates whose plain ids collide (with each other or with ``taken``)
    all move to tie-breakers, so no file silently wins by scan order. Returns the ids and
    one warning per collision.
    """
    used = set(taken)
    counts: dict[str, int] = {}
    for prefs in wanted:
        counts[prefs[0]] = counts.get(prefs[0], 0) + 1
    out: list[str] = []
    warnings: list[str] = []
    clashes: dict[str, list[str]] = {}
    for prefs in wanted:
        plain = prefs[0]
        if counts[plain] == 1 and plain not in used:
            choice = plain
        else:
            choice = next((p for p in prefs[1:] if p not in used), "")
            if not choice:
                n = 2
                while f"{prefs[-1]}~{n}" in used:
                    n += 1
                choice = f"{prefs[-1]}~{n}"
            clashes.setdefault(plain, []).append(choice)
        used.add(choice)
        out.append(choice)
    for plain, ids in clashes.items():
        warnings.append(
            f"model id {plain!r} would name {len(ids) + (plain in set(taken))} files; "
            f"listed as {', '.join(repr(i) for i in ids)} (set an id in the config to choose)"
        )
    return out, warnings


__all__ = [
    "DRAFT_PREFIXES",
    "SplitName",
    "best_projector",
    "hf_model_id",
    "is_draft_name",
    "is_projector_name",
    "model_id",
    "projector_rank",
    "quant_tag",
    "resolve_ids",
    "split_name",
]
