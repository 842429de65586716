"""The default base flags of every sidecar, and upgrading llama-sidecar's legacy BASE_ARGS.

llama-sidecar's default BASE_ARGS was ``-ngl 999 -c 32768 --flash-attn on --no-mmap``.
Current llama-server removed ``--mmap``/``--no-mmap``/``--mlock`` in favour of
``-lm/--load-mode``, so our default says ``-lm none`` (load without mmap), which is what
``--no-mmap`` meant.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from llamasc.flags.table import FlagTable, load_default_table
from llamasc.flags.walk import looks_like_flag

log = logging.getLogger(__name__)

DEFAULT_BASE_ARGS: tuple[str, ...] = (
    "-ngl", "999", "-c", "32768", "--flash-attn", "on", "-lm", "none",
)  # fmt: skip

_LEGACY = ("--mmap", "--no-mmap", "--mlock")


def _legacy_removed(name: str, table: FlagTable) -> bool:
    spec = table.get(name)
    return spec is None or spec.removed or not spec.in_binary


def fix_legacy_base_args(
    args: Sequence[str], table: FlagTable | None = None
) -> tuple[tuple[str, ...], list[str]]:
    """Rewrite ``--mmap``/``--no-mmap``/``--mlock`` to ``-lm MODE`` when ``table`` lacks them.

    Old llama.cpp mapped memory by default, so the old switches combine as: nothing or
    ``--mmap`` -> ``mmap``, ``--no-mmap`` -> ``none``, ``--mlock`` -> ``mmap+mlock``,
    ``--no-mmap --mlock`` -> ``mlock`` (last of --mmap/--no-mmap wins). The ``-lm`` flag
    takes the place of the first legacy switch. Returns (args, human-readable notes).
    """
    table = table or load_default_table()
    legacy: list[int] = []
    pending = 0
    for i, a in enumerate(args):
        if pending:  # a value slot: taken verbatim, whatever it looks like
            pending -= 1
        elif a in _LEGACY:
            legacy.append(i)
        elif looks_like_flag(a) and "=" not in a and (spec := table.get(a)) is not None:
            pending = spec.arity
    present = [args[i] for i in legacy]
    if not present or not all(_legacy_removed(a, table) for a in present):
        return tuple(args), []
    mmap, mlock = True, False
    for a in present:
        if a == "--mlock":
            mlock = True
        else:
            mmap = a == "--mmap"
    mode = {(True, False): "mmap", (False, False): "none", (True, True): "mmap+mlock"}.get(
        (mmap, mlock), "mlock"
    )
    out: list[str] = []
    for i, a in enumerate(args):
        if i == legacy[0]:
            out += ["-lm", mode]
        elif i not in legacy:
            out.append(a)
    note = (
        f"rewrote {' '.join(present)} to '-lm {mode}': this llama-server replaced "
        "--mmap/--no-mmap/--mlock with --load-mode"
    )
    log.info("%s", note)
    return tuple(out), [note]


__all__ = ["DEFAULT_BASE_ARGS", "fix_legacy_base_args"]
