"""Value rules: small callables ``(value, trusted) -> reason refused | None``.

Each numeric rule holds two ranges: what llama-server itself accepts (everyone) and a tighter
one for untrusted callers. Parsing is strict (no whitespace, hex or trailing junk), even
where llama.cpp's ``std::stoi`` would be lenient.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

#: (value, trusted) -> reason it is refused, or None when fine
Check = Callable[[str, bool], "str | None"]

INT32 = (-(2**31), 2**31 - 1)
UNTRUSTED_INT = (-1, 1_048_576)
UNTRUSTED_FLOAT = (-1e6, 1e6)
STRING_CAP = 4096
STRING_CAP_TRUSTED = 32 * 1024
LONG_TEXT_CAP = 16 * 1024  # grammars, JSON schemas, chat templates

TRUTHY = ("on", "enabled", "true", "1")
FALSEY = ("off", "disabled", "false", "0")
AUTOY = ("auto", "-1")

_INT_RE = re.compile(r"[+-]?[0-9]+")
# More digits than any int64 has: refused before int(), which is quadratic in the digit count
# and raises ValueError past 4,300 digits.
MAX_INT_DIGITS = 20
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _fmt(x: float) -> str:
    if isinstance(x, int):
        return str(x)
    if abs(x) >= 1e7:
        return f"{x:g}"
    return str(int(x)) if float(x).is_integer() else repr(x)


def _range_text(lo: float, hi: float) -> str:
    return f"between {_fmt(lo)} and {_fmt(hi)}"


@dataclass(frozen=True, slots=True)
class IntRule:
    lo: int
    hi: int
    untrusted: tuple[int, int] | None = None
    words: tuple[str, ...] = ()
    exclude: tuple[int, ...] = ()

    def __call__(self, value: str, trusted: bool) -> str | None:
        if value in self.words:
            return None
        if not _INT_RE.fullmatch(value):
            extra = f" (or {', '.join(self.words)})" if self.words else ""
            return f"needs an integer{extra}, got '{_clip(value)}'"
        if len(value.lstrip("+-0")) > MAX_INT_DIGITS:
            return f"is out of range: an integer of {len(value)} characters, got '{_clip(value)}'"
        n = int(value)
        lo, hi = self.lo, self.hi
        if not trusted and self.untrusted is not None:
            lo, hi = max(lo, self.untrusted[0]), min(hi, self.untrusted[1])
        if n in self.exclude:
            return f"does not accept {n}"
        if not lo <= n <= hi:
            return f"must be {_range_text(lo, hi)}{_who(lo, hi, self.lo, self.hi)}, got {n}"
        return None


@dataclass(frozen=True, slots=True)
class FloatRule:
    lo: float
    hi: float
    untrusted: tuple[float, float] | None = None

    def __call__(self, value: str, trusted: bool) -> str | None:
        if not _FLOAT_RE.fullmatch(value):
            return f"needs a number, got '{_clip(value)}'"
        x = float(value)
        if not math.isfinite(x):
            return f"needs a finite number, got '{_clip(value)}'"
        lo, hi = self.lo, self.hi
        if not trusted and self.untrusted is not None:
            lo, hi = max(lo, self.untrusted[0]), min(hi, self.untrusted[1])
        if not lo <= x <= hi:
            return f"must be {_range_text(lo, hi)}{_who(lo, hi, self.lo, self.hi)}, got {value}"
        return None


@dataclass(frozen=True, slots=True)
class EnumRule:
    allowed: tuple[str, ...]
    untrusted_denied: tuple[str, ...] = ()
    case_insensitive: bool = False

    def __call__(self, value: str, trusted: bool) -> str | None:
        probe = value.lower() if self.case_insensitive else value
        if probe not in self.allowed:
            return f"must be one of {', '.join(self.allowed)}; got '{_clip(value)}'"
        if not trusted and probe in self.untrusted_denied:
            return f"'{value}' is for operators only (it pins the model in RAM)"
        return None


@dataclass(frozen=True, slots=True)
class ListRule:
    item: Check
    sep: str = ","
    max_items: int = 64
    what: str = "item"

    def __call__(self, value: str, trusted: bool) -> str | None:
        items = re.split(self.sep, value)
        if len(items) > self.max_items:
            return f"has {len(items)} {self.what}s (limit {self.max_items})"
        for item in items:
            if (why := self.item(item.strip(), trusted)) is not None:
                return f"{self.what} '{_clip(item)}' {why}"
        return None


@dataclass(frozen=True, slots=True)
class TextRule:
    cap: int = STRING_CAP
    pattern: re.Pattern[str] | None = None
    shape: str = ""
    json_kind: type | None = None  # dict / list / object: must parse as JSON of that type

    def __call__(self, value: str, trusted: bool) -> str | None:
        cap = max(self.cap, STRING_CAP_TRUSTED) if trusted else self.cap
        if len(value) > cap:
            return f"is too long: {len(value)} characters (limit {cap})"
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return f"must look like {self.shape}; got '{_clip(value)}'"
        if self.json_kind is not None:
            try:
                data = json.loads(value)
            except json.JSONDecodeError as exc:
                return f"must be valid JSON ({exc.msg} at position {exc.pos})"
            except RecursionError:
                return "must be valid JSON of reasonable depth (it nests too deeply)"
            if self.json_kind is not object and not isinstance(data, self.json_kind):
                return f"must be a JSON {'object' if self.json_kind is dict else 'value'}"
        return None


@dataclass(frozen=True, slots=True)
class Explained:
    """A rule whose refusals carry a fixed explanation."""

    rule: Check
    why: str

    def __call__(self, value: str, trusted: bool) -> str | None:
        reason = self.rule(value, trusted)
        return f"{reason} ({self.why})" if reason else None


def _who(lo: float, hi: float, valid_lo: float, valid_hi: float) -> str:
    return "" if (lo, hi) == (valid_lo, valid_hi) else " for untrusted callers"


def _clip(value: str, n: int = 40) -> str:
    return value if len(value) <= n else value[: n - 1] + "…"


def int_rule(
    lo: int,
    hi: int,
    ulo: int | None = None,
    uhi: int | None = None,
    *,
    words: tuple[str, ...] = (),
    exclude: tuple[int, ...] = (),
) -> IntRule:
    untrusted = (ulo if ulo is not None else lo, uhi if uhi is not None else hi)
    return IntRule(lo, hi, untrusted, words, exclude)


def float_rule(
    lo: float, hi: float, ulo: float | None = None, uhi: float | None = None
) -> FloatRule:
    return FloatRule(lo, hi, (ulo if ulo is not None else lo, uhi if uhi is not None else hi))


def truthy_rule(*, auto: bool) -> EnumRule:
    return EnumRule(TRUTHY + FALSEY + (AUTOY if auto else ()))


__all__ = [
    "Check",
    "EnumRule",
    "Explained",
    "FloatRule",
    "IntRule",
    "ListRule",
    "TextRule",
    "float_rule",
    "int_rule",
    "truthy_rule",
]
