"""Walking argv tokens the way llama.cpp's parser does, collecting every structural problem.

llama.cpp (``common/arg.cpp``) looks each flag token up verbatim (``_`` folded to ``-`` in
``--long`` names), then consumes as many following tokens as the option takes, whatever they
look like. We mirror that, with three deliberate differences that only ever refuse more:

* ``--flag=value`` is split into flag and value (llama.cpp would call it an unknown argument);
  the canonical argv we hand to llama-server always carries them as two tokens.
* a value slot holding a *known* flag spelling (``--top-k --port``) is reported as a missing
  value instead of silently swallowing the flag; unknown ``-x`` tokens and negative numbers
  (``--temp -1``) are taken as values, like llama.cpp does.
* an unknown flag followed by a non-flag token takes it as its presumed value, so one typo is
  reported once, not twice.
* ``--flag=value`` whose value is a known flag spelling (``-r=--port``) is refused like
  ``-r --port`` is: its canonical form (two tokens) would otherwise read differently when
  walked again, so the verdict of the canonical form is always the verdict of the input.

Cost: the "did you mean" search is the costly part, so only the first
:data:`MAX_SUGGESTIONS` unknown flags of a walk get one, and names longer than
:data:`MAX_SUGGEST_LEN` none; and a walk gives up after :data:`MAX_STRAYS` stray tokens, so
256 unknown flags cost about what 32 do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from llamasc.flags.table import FlagSpec, FlagTable, normalize_name

MAX_SUGGESTIONS = 5
MAX_SUGGEST_LEN = 64
# A walk stops after this many stray tokens: past them the input is no typo but noise, and
# each further one would only cost the event loop time (a last Stray says how much is left).
MAX_STRAYS = 32


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One flag found in the tokens, with the values it consumed."""

    index: int
    raw: str  # the flag as written, without any `=value`
    spec: FlagSpec
    negative: bool
    values: tuple[str, ...]
    error: str | None = None  # a structural problem (missing value, value given to a switch)

    @property
    def value(self) -> str | None:
        return " ".join(self.values) if self.values else None


@dataclass(frozen=True, slots=True)
class Stray:
    """A token that is not a usable flag: unknown, padded, or a value with no flag."""

    index: int
    token: str
    value: str | None
    reason: str


def looks_like_flag(token: str) -> bool:
    """True for ``-x``/``--xx`` tokens; ``-1``, ``-.5`` and a lone ``-`` are values."""
    if len(token) < 2 or token[0] != "-":
        return False
    return not (token[1].isdigit() or token[1] == ".")


def _split_attached(token: str) -> tuple[str, str | None]:
    name, eq, value = token.partition("=")
    return (name, value) if eq else (token, None)


def did_you_mean(name: str, table: FlagTable) -> str | None:
    """The closest llama-server spelling to ``name`` (similarity ratio >= 0.6), if any."""
    if len(name) > MAX_SUGGEST_LEN:
        return None
    best = process.extractOne(
        normalize_name(name), table.server_names(), scorer=fuzz.ratio, score_cutoff=60
    )
    return best[0] if best else None


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _known_flag(token: str, table: FlagTable) -> bool:
    return looks_like_flag(token) and table.lookup(_split_attached(token)[0]) is not None


def _unknown_reason(name: str, table: FlagTable, *, suggest: bool = True) -> str:
    stripped = name.strip()
    if stripped != name and table.lookup(stripped) is not None:
        return f"llama-server does not accept the spaces around it; write '{stripped}'"
    words = stripped.split()
    if len(words) > 1 and table.lookup(words[0]) is not None:
        return (
            "one argument holding spaces; llama-server wants the flag and its value as "
            f"separate arguments ('{words[0]}' then '{_clip(' '.join(words[1:]))}')"
        )
    hint = did_you_mean(stripped, table) if suggest else None
    return "unknown llama-server flag" + (f"; did you mean '{hint}'?" if hint else "")


def walk(tokens: Sequence[str], table: FlagTable) -> tuple[list[Occurrence], list[Stray]]:
    """Split ``tokens`` into flag occurrences and stray tokens, in input order."""
    found: list[Occurrence] = []
    strays: list[Stray] = []
    n = len(tokens)
    i = 0
    last_switch: Occurrence | None = None  # a value-less flag directly before this token
    unknown = 0
    while i < n:
        if len(strays) >= MAX_STRAYS:
            rest = f"{n - i} more token{'s' if n - i != 1 else ''} not checked"
            strays.append(Stray(i, tokens[i], None, f"too many problems; {rest}"))
            break
        tok = tokens[i]
        padded = tok.strip() != tok and looks_like_flag(tok.strip())
        if not looks_like_flag(tok) and not padded:
            if last_switch is not None:
                reason = f"'{last_switch.raw}' takes no value, so this is a stray value"
            else:
                reason = "a value with no flag before it; every value must follow its flag"
            strays.append(Stray(i, tok, None, reason))
            last_switch = None
            i += 1
            continue
        start = i
        name, attached = _split_attached(tok)
        hit = table.lookup(name)
        if hit is None:
            value = attached
            if value is None and i + 1 < n and not looks_like_flag(tokens[i + 1]):
                value = tokens[i + 1]
                i += 1
            unknown += 1
            reason = _unknown_reason(name, table, suggest=unknown <= MAX_SUGGESTIONS)
            strays.append(Stray(start, name, value, reason))
            last_switch = None
            i += 1
            continue
        spec, negative = hit
        values: list[str] = []
        error = None
        if attached is not None:
            if spec.arity == 0:
                error = "takes no value (write it without '=')"
            elif _known_flag(attached, table):
                error = (
                    f"its value '{_clip(attached)}' is a llama-server flag (refused as "
                    f"'{name} {_clip(attached)}' is: llama-server would be handed it as an "
                    "argument of its own)"
                )
            else:
                values.append(attached)
        i += 1
        while len(values) < spec.arity and error is None:
            if i >= n:
                error = "needs a value" if spec.arity == 1 else f"needs {spec.arity} values"
            elif _known_flag(tokens[i], table):
                error = (
                    f"needs a value, but is followed by the flag '{tokens[i]}' "
                    "(llama-server would take that flag as the value)"
                )
            else:
                values.append(tokens[i])
                i += 1
        if attached is not None and spec.arity == 0:
            values.append(attached)
        occ = Occurrence(start, name, spec, negative, tuple(values), error)
        found.append(occ)
        last_switch = occ if spec.arity == 0 and attached is None else None
    return found, strays


__all__ = ["Occurrence", "Stray", "did_you_mean", "looks_like_flag", "walk"]
