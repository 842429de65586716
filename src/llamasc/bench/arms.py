"""Arms: the flag sets each model is run with. The first arm is the baseline.

Defaults: ``mtp-off`` (no speculative flags) and ``mtp-on`` (``--spec-type draft-mtp
--spec-draft-n-max 3``). ``--arm NAME="FLAGS"`` adds an arm or replaces the one with that
name. Arm flags pass the flag validator in operator mode: an arm cannot, for instance, move
the server's port, which the bench owns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from llamasc.errors import ConfigError, FlagError

BASELINE_ARM = "mtp-off"
DEFAULT_ARMS: tuple[tuple[str, str], ...] = (
    (BASELINE_ARM, ""),
    ("mtp-on", "--spec-type draft-mtp --spec-draft-n-max 3"),
)
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


@dataclass(frozen=True)
class Arm:
    """A named flag set added to every model's production flags."""

    name: str
    flags: tuple[str, ...] = ()


def make_arm(name: str, flags_text: str) -> Arm:
    """Validate ``flags_text`` (operator policy) and build the arm."""
    from llamasc.flags import FlagPolicy, validate_flags

    if not _ARM_NAME.match(name):
        raise ConfigError(
            f"bad arm name {name!r}: use letters, digits, '.', '_' or '-' (max 40 chars)"
        )
    if not flags_text.strip():
        return Arm(name=name)
    result = validate_flags(flags_text, policy=FlagPolicy.operator())
    if not result.ok:
        raise FlagError(f"arm {name!r}: invalid llama-server flags", details=result.problems)
    return Arm(name=name, flags=tuple(result.canonical))


def parse_arm_option(text: str) -> tuple[str, str]:
    """``NAME=FLAGS`` -> (name, flags text)."""
    name, eq, flags = text.partition("=")
    if not eq or not name.strip():
        raise ConfigError(f'--arm expects NAME="FLAGS", got {text!r}')
    return name.strip(), flags.strip()


def build_arms(options: Sequence[str] = (), only: Sequence[str] = ()) -> list[Arm]:
    """The default arms, with ``--arm`` options added or replacing, then ``--arms`` kept."""
    specs = dict(DEFAULT_ARMS)
    for text in options:
        name, flags = parse_arm_option(text)
        specs[name] = flags
    if only:
        unknown = [n for n in only if n not in specs]
        if unknown:
            raise ConfigError(f"unknown arm(s) {', '.join(unknown)} (arms: {', '.join(specs)})")
        specs = {n: specs[n] for n in dict.fromkeys(only)}
    return [make_arm(name, flags) for name, flags in specs.items()]


__all__ = ["BASELINE_ARM", "DEFAULT_ARMS", "Arm", "build_arms", "make_arm", "parse_arm_option"]
