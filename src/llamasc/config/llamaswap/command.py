"""A llama-swap ``cmd``: comment lines, continuations, a shell-like split (never a shell),
and the split of a llama-server command line into its GGUF and its operator arguments."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from llamasc.errors import ConfigError

MODEL_CANONICAL = "--model"
# what llamasc sets itself for every child: these are dropped from a model's operator args
OWNED_BY_POOL = frozenset({"--host", "--port", "--alias", "--api-key", "--api-key-file"})


def strip_comment_lines(cmd: str) -> str:
    """Drop lines whose first non-blank character is ``#`` (llama-swap's rule)."""
    return "\n".join(ln for ln in cmd.split("\n") if not ln.strip().startswith("#"))


def join_continuations(cmd: str) -> str:
    """llama-swap's rule: a line whose trimmed end is ``\\`` continues on the next line."""
    lines = []
    for line in cmd.split("\n"):
        trimmed = line.strip()
        lines.append(trimmed[:-1] + " " if trimmed.endswith("\\") else line)
    return "\n".join(lines)


def split_command(cmd: str, *, windows: bool = False) -> list[str]:
    """Split like a POSIX shell (or by Windows rules), without running one."""
    if windows:
        from llamasc.remote.quoting import msvc_split

        return msvc_split(cmd)
    try:
        return shlex.split(cmd, comments=False, posix=True)
    except ValueError as exc:
        raise ConfigError(f"cannot split the command: {exc}") from None


def is_llama_server(program: str) -> bool:
    """True when the program is llama-server, whatever its path (``llama-server.exe`` too)."""
    base = re.split(r"[\\/]", program)[-1].lower()
    return base.removesuffix(".exe").startswith("llama-server")


@dataclass(frozen=True)
class FlagGroup:
    """One flag with its values as written (``tokens``) and its canonical name."""

    canonical: str
    tokens: tuple[str, ...]
    values: tuple[str, ...]
    notes: str = ""


def _looks_like_flag(token: str) -> bool:
    return len(token) >= 2 and token[0] == "-" and not (token[1].isdigit() or token[1] == ".")


def flag_groups(tokens: Sequence[str]) -> Iterator[FlagGroup]:
    """Walk llama-server arguments flag by flag, value counts from the flag table; an unknown
    flag takes the next token as its value unless that looks like a flag, as llama.cpp's own
    parser would."""
    from llamasc.flags import load_default_table

    table = load_default_table()
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
        group = tuple(tokens[i : i + 1 + arity])
        values = (attached,) if eq else group[1:]
        i += 1 + arity
        yield FlagGroup(canonical, group, values, notes)


def split_server_args(tokens: Sequence[str]) -> tuple[str | None, list[str], list[str]]:
    """``(GGUF path, operator args, dropped args)`` of a llama-server command's arguments.

    The pool owns where a child listens, its alias and its API key; those are dropped.
    """
    path: str | None = None
    kept: list[str] = []
    dropped: list[str] = []
    for g in flag_groups(tokens):
        if g.canonical == MODEL_CANONICAL:
            if g.values:
                path = g.values[-1]
        elif g.canonical in OWNED_BY_POOL:
            dropped.extend(g.tokens)
        else:
            kept.extend(g.tokens)
    return path, kept, dropped


__all__ = [
    "FlagGroup",
    "flag_groups",
    "is_llama_server",
    "join_continuations",
    "split_command",
    "split_server_args",
    "strip_comment_lines",
]
