"""Build a :class:`FlagTable` for one binary from its ``--help`` output.

llama.cpp prints one block per option: a line starting with ``-`` in column 0 lists the
comma-separated spellings; a placeholder exactly one space after the last spelling means the
option takes a value (the description sits two or more spaces away). Removed options are still
listed, with "the argument has been removed" in their description.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from llamasc.errors import DiscoveryError
from llamasc.flags.table import FlagSpec, FlagTable, load_default_table, normalize_name

log = logging.getLogger(__name__)

_NAME = re.compile(r"-[^\s,]+")
_REMOVED = "argument has been removed"
# Environment a child could pick flags up from; --help must show the binary's own defaults.
_SCRUBBED_ENV_PREFIXES = ("LLAMA_ARG_", "LLAMA_SERVER_")

_cache: dict[tuple[str, int, int], FlagTable] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class HelpFlag:
    """One option block of ``--help``."""

    names: tuple[str, ...]
    arity: int
    placeholder: str = ""
    removed: str | None = None


def _arity(placeholder: str) -> int:
    if not placeholder:
        return 0
    # `START END` is the only two-value form; `<tensor name pattern>=<buffer type>` is one.
    words = placeholder.split(" ")
    if len(words) == 2 and not any(c in placeholder for c in "<>[]{}"):
        return 2
    return 1


def parse_help_text(text: str) -> list[HelpFlag]:
    """Parse llama-server's ``--help`` into option blocks (section rules are skipped)."""
    blocks: list[HelpFlag] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("-") or line.startswith("-----"):
            continue
        names: list[str] = []
        pos = 0
        while (m := _NAME.match(line, pos)) is not None:
            names.append(m.group())
            pos = m.end()
            if not line.startswith(",", pos):
                break
            pos += 1
            while pos < len(line) and line[pos] == " ":
                pos += 1
        if not names:
            continue
        rest = line[pos:]
        placeholder = ""
        if len(rest) > 1 and rest[0] == " " and rest[1] != " ":
            placeholder = re.split(r"\s{2,}", rest.strip(), maxsplit=1)[0]
        description = [rest]
        for follow in lines[i + 1 :]:
            if follow.startswith("-") or (follow and not follow[0].isspace()):
                break
            description.append(follow)
        desc = " ".join(" ".join(description).split())
        removed = None
        if _REMOVED in desc:
            removed = desc[desc.index(_REMOVED) :]
        blocks.append(HelpFlag(tuple(names), _arity(placeholder), placeholder, removed))
    return blocks


def table_for_help(blocks: list[HelpFlag], base: FlagTable, *, binary: str) -> FlagTable:
    """``base`` narrowed to the options in ``blocks`` (see :func:`table_from_help`)."""
    by_spec: dict[str, list[HelpFlag]] = {}
    fresh_blocks: list[HelpFlag] = []
    for block in blocks:
        spec = next((s for n in block.names if (s := base.get(n)) is not None and s.server), None)
        if spec is None:
            fresh_blocks.append(block)
        else:
            by_spec.setdefault(spec.canonical, []).append(block)
    specs: list[FlagSpec] = []
    for spec in base:
        if not spec.server:
            specs.append(spec)
            continue
        found = by_spec.get(spec.canonical)
        if not found:
            specs.append(spec if spec.removed else replace(spec, in_binary=False))
            continue
        known = {normalize_name(n) for n in spec.names}
        extra = tuple(n for b in found for n in b.names if normalize_name(n) not in known)
        removed = next((b.removed for b in found if b.removed), None)
        view = replace(spec, names=spec.names + extra) if extra else spec
        if removed and not view.removed:
            view = replace(view, classes=view.classes | {"R"}, notes=f"REMOVED: {removed}")
        elif not removed and view.removed:
            # An older binary still has it (e.g. --no-mmap): alive, but of unknown class to us.
            view = replace(view, classes=view.classes - {"R"}, known=False,
                           value_kind="unknown" if view.arity else "flag",
                           notes="listed by this binary's --help")  # fmt: skip
        specs.append(view)
    for block in fresh_blocks:
        longs = [n for n in block.names if n.startswith("--")]
        specs.append(
            FlagSpec(
                canonical=(longs or list(block.names))[0],
                names=block.names,
                arity=block.arity,
                value_kind="unknown" if block.arity else "flag",
                notes="found only in this binary's --help",
                classes=frozenset({"R"}) if block.removed else frozenset(),
                known=False,
            )
        )
    table = FlagTable(specs, source=f"{binary} --help", binary=binary)
    if table.unknown_to_llamasc or table.missing_from_binary:
        log.info(
            "llama-server %s: %d options unknown to llamasc %s, %d of llamasc's missing %s",
            binary,
            len(table.unknown_to_llamasc),
            table.unknown_to_llamasc[:10],
            len(table.missing_from_binary),
            table.missing_from_binary[:10],
        )
    return table


def _help_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}


def table_from_help(
    binary: Path | str, timeout: float = 10, *, base: FlagTable | None = None
) -> FlagTable:
    """Run ``<binary> --help`` and return the table of what that binary accepts.

    Flags the binary lists but llamasc's table lacks become ``known=False`` specs (untrusted
    callers are refused them); flags llamasc knows but the binary lacks get
    ``in_binary=False`` ("unknown to this llama-server"). Cached per (path, mtime, size).
    """
    path = Path(binary)
    try:
        st = path.stat()
    except OSError as exc:
        raise DiscoveryError(f"llama-server not found at {path}: {exc.strerror}") from exc
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if base is None:
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None:
            return hit
    try:
        proc = subprocess.run(
            [str(path), "--help"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            env=_help_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DiscoveryError(f"{path} --help did not finish within {timeout:g} s") from exc
    except OSError as exc:
        raise DiscoveryError(f"cannot run {path} --help: {exc.strerror or exc}") from exc
    text = proc.stdout.decode("utf-8", "replace")
    blocks = parse_help_text(text)
    if proc.returncode != 0 or not blocks:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise DiscoveryError(
            f"{path} --help exited {proc.returncode} and listed {len(blocks)} options; "
            "is it a llama-server?",
            details=tail,
        )
    table = table_for_help(blocks, base or load_default_table(), binary=str(path))
    if base is None:
        with _cache_lock:
            _cache[key] = table
    return table


__all__ = ["HelpFlag", "parse_help_text", "table_for_help", "table_from_help"]
