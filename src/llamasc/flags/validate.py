"""Validating llama-server flags against a policy, collecting every problem at once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamasc.errors import FlagError
from llamasc.flags.canonical import build_canonical, sidecar_key
from llamasc.flags.policy import FlagPolicy, check_paths, operator_warning, refusal
from llamasc.flags.table import FlagTable, load_default_table
from llamasc.flags.tokens import parse_flag_input, problems_message
from llamasc.flags.values import check_combination, check_values
from llamasc.flags.walk import Occurrence, walk

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FlagVerdict:
    """The verdict on one flag occurrence (or one stray token) of the input."""

    flag: str
    value: str | None
    ok: bool
    reason: str
    #: the canonical name, when the flag is known
    canonical: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "value": self.value,
            "ok": self.ok,
            "reason": self.reason,
            "canonical": self.canonical,
        }


@dataclass(frozen=True, slots=True)
class Validation:
    """The outcome of :func:`validate_flags`: every verdict, every problem, the canonical form.

    ``canonical`` is empty unless ``ok``.
    """

    ok: bool
    items: list[FlagVerdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    canonical: tuple[str, ...] = ()
    #: accepted operator flags that turn off something llamasc relies on, and what stops working
    warnings: list[str] = field(default_factory=list)

    def raise_for_problems(self) -> None:
        """Raise :class:`FlagError` listing every problem, unless the flags are valid."""
        if not self.ok:
            raise FlagError(problems_message(len(self.problems)), details=self.problems)

    def key(self, model_id: str) -> str:
        """The sidecar key of ``model_id`` run with these (canonical) flags."""
        return sidecar_key(model_id, self.canonical)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "items": [v.as_dict() for v in self.items],
            "problems": list(self.problems),
            "canonical": list(self.canonical),
            "warnings": list(self.warnings),
        }


def _canonical_set(names: frozenset[str] | dict[str, Any], table: FlagTable) -> frozenset[str]:
    return frozenset(table.canonical_name(n) or n for n in names)


def _judge(
    occ: Occurrence,
    policy: FlagPolicy,
    table: FlagTable,
    sets: tuple[frozenset[str], frozenset[str], frozenset[str]],
) -> tuple[str | None, Occurrence]:
    allowed, denied, rooted = sets
    spec = occ.spec
    why = refusal(spec, policy, allowed=allowed, denied=denied, rooted=rooted)
    if why is None and occ.error is not None:
        why = occ.error
    if why is None and spec.known and spec.value_kind in ("path", "path-list", "dir"):
        roots = _roots_for(spec.canonical, policy, table)
        why, resolved = check_paths(spec, occ.values, roots)
        if why is None:
            occ = Occurrence(occ.index, occ.raw, spec, occ.negative, resolved, occ.error)
    if why is None and spec.known:
        why = check_values(spec, occ.values, policy.trusted)
    return why, occ


def _int(values: dict[str, tuple[str, ...]], flag: str) -> int | None:
    try:
        return int(values[flag][0])
    except (KeyError, IndexError, ValueError):
        return None


def check_caps(values: dict[str, tuple[str, ...]], policy: FlagPolicy) -> dict[str, str]:
    """The operator's ``max_ctx_size`` / ``max_parallel`` for untrusted callers, so that no
    client can ask for tens of GB of KV cache (``-c 1048576 -np 64``)."""
    if policy.trusted:
        return {}
    out: dict[str, str] = {}
    cap, slots_cap = policy.max_ctx_size, policy.max_parallel
    ctx = _int(values, "--ctx-size")
    if cap is not None and ctx is not None and (ctx == 0 or ctx > cap):
        got = "0 (the model's whole trained context)" if ctx == 0 else str(ctx)
        out["--ctx-size"] = (
            f"must be at most {cap} in this pool (flag_policy max_ctx_size), got {got}"
        )
    slots = _int(values, "--parallel")
    if slots_cap is not None and slots is not None and slots > slots_cap:
        out["--parallel"] = (
            f"must be at most {slots_cap} in this pool (flag_policy max_parallel), got {slots}"
        )
    per_slot = _int(values, "--kv-unified-per-slot")
    if cap is not None and ctx is None and per_slot is not None:
        n = slots if slots is not None and slots > 0 else 4
        if per_slot * n > cap:
            out["--kv-unified-per-slot"] = (
                f"{per_slot} per slot x {n} slots = {per_slot * n} tokens of context, over "
                f"this pool's {cap} (flag_policy max_ctx_size)"
            )
    return out


def _roots_for(canonical: str, policy: FlagPolicy, table: FlagTable) -> tuple[Path, ...] | None:
    for name, dirs in policy.path_roots.items():
        if (table.canonical_name(name) or name) == canonical:
            return dirs
    return None


def validate_flags(
    flags: str | Sequence[str],
    policy: FlagPolicy | None = None,
    table: FlagTable | None = None,
) -> Validation:
    """Check ``flags`` (a string, JSON list text, or tokens) against ``policy``.

    Never raises for bad flags: every problem is collected in the returned
    :class:`Validation` (call ``raise_for_problems()`` to turn it into a FlagError). A bug
    in a check that some input trips is logged with its traceback and reported as a problem
    of that input too: whatever a client sends ends in a refusal, never in a crash.
    """
    policy = policy or FlagPolicy()
    table = table or load_default_table()
    try:
        return _validate(flags, policy, table)
    except Exception as exc:
        log.exception("validating llama-server flags failed")
        return Validation(
            ok=False, problems=[f"these flags could not be checked ({type(exc).__name__})"]
        )


def _validate(flags: str | Sequence[str], policy: FlagPolicy, table: FlagTable) -> Validation:
    try:
        tokens = parse_flag_input(flags)
    except FlagError as exc:
        return Validation(ok=False, problems=list(exc.details) or [exc.message])
    occurrences, strays = walk(tokens, table)
    sets = (
        _canonical_set(policy.allow, table),
        _canonical_set(policy.deny, table),
        _canonical_set(policy.path_roots, table),
    )
    rows: list[tuple[int, FlagVerdict]] = []
    problems: list[tuple[int, str]] = []
    accepted: list[Occurrence] = []
    judged = [_judge(found, policy, table, sets) for found in occurrences]
    last = {o.spec.canonical: i for i, (refused, o) in enumerate(judged) if refused is None}
    values = {flag: judged[i][1].values for flag, i in last.items()}
    for flag, reason in {**check_combination(values, policy.trusted),
                         **check_caps(values, policy)}.items():  # fmt: skip
        judged[last[flag]] = (reason, judged[last[flag]][1])
    for why, occ in judged:
        name = occ.spec.spelling(occ.negative) if occ.spec.negatives else occ.spec.canonical
        rows.append((occ.index, FlagVerdict(occ.raw, occ.value, why is None, why or "ok", name)))
        if why is None:
            accepted.append(occ)
        else:
            problems.append((occ.index, f"{occ.raw}: {why}"))
    for stray in strays:
        rows.append((stray.index, FlagVerdict(stray.token, stray.value, False, stray.reason)))
        problems.append((stray.index, f"{stray.token!r}: {stray.reason}"))
    rows.sort(key=lambda r: r[0])
    problems.sort(key=lambda p: p[0])
    ok = not problems
    canonical = build_canonical(accepted) if ok else ()
    warnings: list[str] = []
    if policy.trusted:
        for occ in accepted:
            note = operator_warning(occ.spec, occ.negative)
            if note is not None and (msg := f"{occ.raw}: {note}") not in warnings:
                warnings.append(msg)
    if not ok:
        log.debug("refused llama-server flags: %s", [p for _, p in problems])
    return Validation(
        ok=ok,
        items=[v for _, v in rows],
        problems=[p for _, p in problems],
        canonical=canonical,
        warnings=warnings,
    )


__all__ = ["FlagVerdict", "Validation", "check_caps", "validate_flags"]
