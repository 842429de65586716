"""Quoting argv for the two shells a bench host can have: POSIX sh and Windows cmd.exe.

POSIX is easy: :func:`shlex.quote` every word. Windows has two layers. A program receives
one command line and splits it itself, by the MSVC rules (``CommandLineToArgvW``): so each
argument is first quoted for those rules (:func:`msvc_quote`). Then cmd.exe reads the line
and acts on ``& | < > ^ ( )`` outside double quotes and on ``%`` everywhere, so those get a
caret or are doubled (:func:`cmd_escape`). cmd tracks quotes naively (every ``"`` toggles,
even an MSVC-escaped ``\\"``), and the escaper follows exactly that state.

:func:`msvc_split` is the reverse of the first layer; llama-swap uses the same rules to split
``cmd`` on Windows hosts, and the tests use it to check the quoting round-trips.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from llamasc.errors import RemoteError

_CMD_META = frozenset("&|<>^()")
_MSVC_SAFE = re.compile(r'[^\s"]+')
# Characters no argument we hand to a remote shell may carry: they cannot be quoted safely
# for cmd.exe (newlines end the command) and make no sense in llama-server flags.
_UNQUOTABLE = re.compile(r"[\x00\r\n]")


def posix_join(argv: Iterable[str]) -> str:
    """One POSIX shell command line in which every word stays one literal word."""
    words = list(argv)
    for word in words:
        _check_quotable(word)
    return " ".join(shlex.quote(w) for w in words)


def _check_quotable(arg: str) -> None:
    if _UNQUOTABLE.search(arg):
        raise RemoteError(f"cannot pass an argument with a newline or NUL to a shell: {arg!r}")


def msvc_quote(arg: str) -> str:
    """Quote one argument so the MSVC runtime parses it back to exactly ``arg``."""
    _check_quotable(arg)
    if arg and _MSVC_SAFE.fullmatch(arg):
        return arg
    out: list[str] = ['"']
    backslashes = 0
    for ch in arg:
        if ch == "\\":
            backslashes += 1
            continue
        if ch == '"':
            # 2n backslashes + \" give n backslashes and a literal quote.
            out.append("\\" * (2 * backslashes + 1) + '"')
        else:
            out.append("\\" * backslashes + ch)
        backslashes = 0
    # Backslashes before the closing quote must be doubled, or they would escape it.
    out.append("\\" * (2 * backslashes) + '"')
    return "".join(out)


def cmd_escape(line: str, *, batch: bool) -> str:
    """Protect an MSVC-quoted command line from cmd.exe's own parsing.

    ``batch=True`` is for lines in a ``.cmd`` file, where ``%`` must be doubled. On an
    interactive/``cmd /c`` line a literal ``%`` cannot be written reliably, so it is refused.
    """
    out: list[str] = []
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
            out.append(ch)
        elif ch == "%":
            if not batch:
                raise RemoteError(f"cannot pass '%' on a cmd.exe command line: {line!r}")
            out.append("%%")
        elif ch in _CMD_META and not quoted:
            out.append("^" + ch)
        else:
            out.append(ch)
    return "".join(out)


def cmd_join(argv: Iterable[str], *, batch: bool) -> str:
    """One cmd.exe command line (for a ``.cmd`` file when ``batch``) running ``argv``."""
    return cmd_escape(" ".join(msvc_quote(a) for a in argv), batch=batch)


def cmd_unescape(line: str, *, batch: bool) -> str:
    """What cmd.exe hands to the program for a line made by :func:`cmd_escape` (for tests)."""
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == '"':
            quoted = not quoted
            out.append(ch)
        elif ch == "%" and batch and line[i + 1 : i + 2] == "%":
            out.append("%")
            i += 1
        elif ch == "^" and not quoted and i + 1 < len(line):
            out.append(line[i + 1])
            i += 1
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def msvc_split(line: str) -> list[str]:
    """Split a command line by the MSVC runtime's rules (the program's view of argv)."""
    args: list[str] = []
    cur: list[str] = []
    in_word = False
    quoted = False
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            j = i
            while j < n and line[j] == "\\":
                j += 1
            count = j - i
            if j < n and line[j] == '"':
                cur.append("\\" * (count // 2))
                if count % 2:
                    cur.append('"')
                    i = j + 1
                else:
                    i = j  # the quote toggles below
            else:
                cur.append("\\" * count)
                i = j
            in_word = True
            continue
        if ch == '"':
            in_word = True
            if quoted and i + 1 < n and line[i + 1] == '"':
                # "" inside quotes is a literal quote (post-2008 runtime rule)
                cur.append('"')
                i += 2
                continue
            quoted = not quoted
        elif ch in " \t\n" and not quoted:
            if in_word:
                args.append("".join(cur))
                cur = []
                in_word = False
        else:
            cur.append(ch)
            in_word = True
        i += 1
    if in_word:
        args.append("".join(cur))
    return args


def windows_sftp_path(path: str) -> str:
    r"""``C:\Users\sam\x`` -> ``/C:/Users/sam/x``: Win32-OpenSSH's SFTP spelling."""
    p = path.replace("\\", "/")
    if re.match(r"^[A-Za-z]:/", p):
        return "/" + p
    return p


__all__ = [
    "cmd_escape",
    "cmd_join",
    "cmd_unescape",
    "msvc_quote",
    "msvc_split",
    "posix_join",
    "windows_sftp_path",
]
