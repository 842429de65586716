"""Turning a client's flag text into argv tokens, with hard size and character limits.

Input is either a string tokenised like a POSIX shell (:mod:`shlex`, no comments, no
expansion: nothing downstream is a shell) or, when it starts with ``[``, a JSON list of strings.

Character policy: tab and newline are allowed (grammars, templates and stop strings are
legitimately multi-line); every other C0 control (NUL, CR, ESC, ...), DEL, the C1 range
(0x80-0x9F, which holds the 8-bit CSI) and unpaired surrogates are refused, because they can
corrupt logs, terminals or the child's argv.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from typing import cast

from llamasc.errors import FlagError

MAX_TOKENS = 256
MAX_BYTES = 32 * 1024
# The raw text may carry quoting on top of MAX_BYTES of tokens; bound the tokeniser's work.
MAX_TEXT_BYTES = 2 * MAX_BYTES

_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# shlex's whitespace; with no quote or backslash in the text, splitting on it is what shlex
# does, some 50 times faster (shlex reads one character at a time, in Python).
_SHLEX_SPACE = re.compile(r"[ \t\r\n]+")
_SHLEX_SPECIAL = re.compile(r"[\"'\\]")


def problems_message(count: int) -> str:
    """The one-line summary of a FlagError carrying ``count`` problems."""
    return f"invalid llama-server flags: {count} problem{'' if count == 1 else 's'}"


def _fail(problem: str) -> FlagError:
    return FlagError(problems_message(1), details=[problem])


def _describe(ch: str) -> str:
    names = {"\x00": "NUL", "\r": "carriage return", "\x1b": "ESC", "\x7f": "DEL"}
    return names.get(ch, f"U+{ord(ch):04X}")


def check_tokens(tokens: Sequence[object]) -> list[str]:
    """Every limit problem of ``tokens`` (count, size, characters); empty when fine."""
    problems: list[str] = []
    if len(tokens) > MAX_TOKENS:
        problems.append(f"too many tokens: {len(tokens)} (limit {MAX_TOKENS})")
    total = 0
    for i, tok in enumerate(tokens):
        if not isinstance(tok, str):
            problems.append(f"token {i + 1} is not a string")
            continue
        try:
            total += len(tok.encode("utf-8"))
        except UnicodeEncodeError:
            problems.append(f"token {i + 1} contains an unpaired surrogate (not valid UTF-8)")
            continue
        bad = _FORBIDDEN.search(tok)
        if bad:
            problems.append(
                f"token {i + 1} contains a control character ({_describe(bad.group())}); "
                "only tab and newline are allowed"
            )
    if total > MAX_BYTES:
        problems.append(f"flags are too large: {total} bytes (limit {MAX_BYTES})")
    return problems


def _split_text(text: str) -> list[str]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise _fail(f"the flags look like a JSON list but do not parse: {exc.msg}") from exc
        except RecursionError:
            raise _fail("the flags look like a JSON list but nest too deeply") from None
        if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
            raise _fail("a JSON flag list must be a list of strings")
        return data
    if _SHLEX_SPECIAL.search(text) is None:
        return [t for t in _SHLEX_SPACE.split(text) if t]
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError as exc:
        reason = "unbalanced quotes" if "quotation" in str(exc) else str(exc).lower()
        raise _fail(f"cannot split the flags: {reason}") from exc


def parse_flag_input(text_or_tokens: str | Sequence[str]) -> list[str]:
    """Tokens from a flag string or list, within the limits; raises :class:`FlagError`.

    A string is split like a POSIX shell (``shlex``, quotes and backslashes honoured,
    unbalanced quotes refused) unless it starts with ``[``: then it must be a JSON list of
    strings. A sequence is taken as tokens as is. Limits: at most 256 tokens and 32 KiB in
    total, no control characters except tab and newline.
    """
    if isinstance(text_or_tokens, str):
        text = text_or_tokens
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise _fail("the flags contain an unpaired surrogate (not valid UTF-8)") from None
        if size > MAX_TEXT_BYTES:
            raise _fail(f"flags are too large: {size} bytes (limit {MAX_BYTES})")
        # Refuse forbidden characters before shlex can swallow or reinterpret them.
        if bad := _FORBIDDEN.search(text):
            raise _fail(
                f"the flags contain a control character ({_describe(bad.group())}); "
                "only tab and newline are allowed"
            )
        tokens: list[object] = list(_split_text(text))
        if size <= MAX_BYTES and not text.lstrip().startswith("["):
            # split text holds no character the whole text did not: only the count is left
            if len(tokens) > MAX_TOKENS:
                raise _fail(f"too many tokens: {len(tokens)} (limit {MAX_TOKENS})")
            return cast(list[str], tokens)
    else:
        tokens = list(text_or_tokens)
    problems = check_tokens(tokens)
    if problems:
        raise FlagError(problems_message(len(problems)), details=problems)
    return cast(list[str], tokens)


def quote_tokens(tokens: Sequence[str]) -> str:
    """Tokens rendered as one shell-safe line (for display; never run through a shell)."""
    return shlex.join(tokens)


__all__ = [
    "MAX_BYTES",
    "MAX_TOKENS",
    "check_tokens",
    "parse_flag_input",
    "problems_message",
    "quote_tokens",
]
