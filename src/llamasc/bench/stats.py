"""From request records to per-model, per-arm numbers.

Definitions (stated here because benchmarks disagree on names):

- decode tok/s of one request = ``1000 * (predicted_n - 1) / predicted_ms`` from the
  server's own timings: the first token comes from the prompt pass, so it is excluded, as in
  current llama-server's ``predicted_per_second``. Raw fields are kept in the records.
- prompt tok/s = ``1000 * prompt_n / prompt_ms`` (requests are sent with cache_prompt off).
- acceptance = sum of ``draft_n_accepted`` / sum of ``draft_n`` over the arm's requests (a
  ratio of sums, not a mean of ratios); none when the arm drafted nothing.
- speedup = median decode tok/s of the arm / median of the baseline arm of the same model,
  host and build; e2e speedup = median end-to-end time of the baseline / of the arm.
- spread = sample standard deviation (n - 1); ``cv`` = spread / mean.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llamasc.bench.arms import BASELINE_ARM
from llamasc.bench.records import ARM_MARKER_PROMPT


@dataclass(frozen=True)
class Stat:
    """Summary of one metric over an arm's requests."""

    n: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float

    @property
    def cv(self) -> float | None:
        return self.stdev / self.mean if self.mean else None


def summarize_values(values: Iterable[float]) -> Stat | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return Stat(
        n=len(vals),
        median=statistics.median(vals),
        mean=statistics.fmean(vals),
        stdev=statistics.stdev(vals) if len(vals) > 1 else 0.0,
        min=min(vals),
        max=max(vals),
    )


def decode_tps(timings: dict[str, Any]) -> float | None:
    n, ms = timings.get("predicted_n"), timings.get("predicted_ms")
    if not isinstance(n, (int, float)) or not isinstance(ms, (int, float)) or n <= 1 or ms <= 0:
        return None
    return 1000.0 * (n - 1) / ms


def prompt_tps(timings: dict[str, Any]) -> float | None:
    n, ms = timings.get("prompt_n"), timings.get("prompt_ms")
    if not isinstance(n, (int, float)) or not isinstance(ms, (int, float)) or n <= 0 or ms <= 0:
        return None
    return 1000.0 * n / ms


def acceptance(records: Sequence[dict[str, Any]]) -> float | None:
    drafted = sum(int((r.get("timings") or {}).get("draft_n") or 0) for r in records)
    accepted = sum(int((r.get("timings") or {}).get("draft_n_accepted") or 0) for r in records)
    return accepted / drafted if drafted else None


@dataclass
class ArmRow:
    """One line of the report: a model run with one arm (on one host and build)."""

    host: str
    build: str
    model: str
    arm: str
    status: str  # "ok" | "unsupported" | "failed"
    category: str | None = None
    n: int = 0
    errors: int = 0
    decode: Stat | None = None
    prompt: Stat | None = None
    ttft: Stat | None = None
    e2e: Stat | None = None
    acceptance: float | None = None
    drafted: int = 0
    speedup: float | None = None
    e2e_speedup: float | None = None
    baseline: str | None = None
    error: str | None = None
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("decode", "prompt", "ttft", "e2e"):
            stat = getattr(self, name)
            if stat is not None:
                out[name]["cv"] = stat.cv
        return out


def _latest_by_key(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per identity: an ``ok`` one if any (the last), else the last of any."""
    best: dict[str, dict[str, Any]] = {}
    for rec in records:
        key = rec.get("key")
        if not isinstance(key, str):
            continue
        prev = best.get(key)
        if prev is None or rec.get("status") == "ok" or prev.get("status") != "ok":
            best[key] = rec
    return list(best.values())


def summarize(
    records: Iterable[dict[str, Any]],
    *,
    baseline: str | None = None,
    by_category: bool = False,
) -> list[ArmRow]:
    """One row per (host, build, model, arm[, category]), with speedups filled in."""
    recs = _latest_by_key(records)
    groups: dict[tuple[str, str, str, str, str | None], list[dict[str, Any]]] = {}
    markers: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for rec in recs:
        ident = (
            str(rec.get("host")),
            str(rec.get("build")),
            str(rec.get("model")),
            str(rec.get("arm")),
        )
        if rec.get("prompt_id") == ARM_MARKER_PROMPT:
            markers[ident] = rec
            continue
        category = rec.get("category") if by_category else None
        groups.setdefault((*ident, category), []).append(rec)
    rows: list[ArmRow] = []
    for ident, marker in markers.items():
        rows.append(
            ArmRow(
                *ident,
                status="unsupported",
                error=marker.get("error"),
                flags=list(marker.get("flags") or []),
            )
        )
    for (host, build, model, arm, category), group in groups.items():
        ok = [r for r in group if r.get("status") == "ok"]
        timings = [r.get("timings") or {} for r in ok]
        rows.append(
            ArmRow(
                host=host,
                build=build,
                model=model,
                arm=arm,
                category=category,
                status="ok" if ok else "failed",
                n=len(ok),
                errors=len(group) - len(ok),
                decode=summarize_values(v for t in timings if (v := decode_tps(t)) is not None),
                prompt=summarize_values(v for t in timings if (v := prompt_tps(t)) is not None),
                ttft=summarize_values(r["ttft_s"] for r in ok if r.get("ttft_s") is not None),
                e2e=summarize_values(r["e2e_s"] for r in ok if r.get("e2e_s") is not None),
                acceptance=acceptance(ok),
                drafted=sum(int(t.get("draft_n") or 0) for t in timings),
                error=next((r.get("error") for r in group if r.get("error")), None),
                flags=list((ok or group)[0].get("flags") or []),
            )
        )
    _order(rows)
    _speedups(rows, baseline)
    return rows


def _order(rows: list[ArmRow]) -> None:
    """By model, host, build, category; the baseline arm first, others as first seen."""
    arm_first: dict[str, int] = {}
    for i, row in enumerate(rows):
        arm_first.setdefault(row.arm, i)
    rows.sort(
        key=lambda r: (
            r.model,
            r.host,
            r.build,
            r.category or "",
            0 if r.arm == BASELINE_ARM else 1,
            arm_first[r.arm],
            r.arm,
        )
    )


def _speedups(rows: list[ArmRow], baseline: str | None) -> None:
    families: dict[tuple[str, str, str, str | None], list[ArmRow]] = {}
    for row in rows:
        families.setdefault((row.host, row.build, row.model, row.category), []).append(row)
    for family in families.values():
        measured = [r for r in family if r.decode is not None]
        if not measured:
            continue
        names = [r.arm for r in measured]
        base_name = (
            baseline
            if baseline in names
            else (BASELINE_ARM if BASELINE_ARM in names else (None if baseline else names[0]))
        )
        base = next((r for r in measured if r.arm == base_name), None)
        if base is None or base.decode is None:
            continue
        for row in family:
            row.baseline = base.arm
            if row.decode is not None and base.decode.median > 0:
                row.speedup = row.decode.median / base.decode.median
            if row.e2e is not None and base.e2e is not None and row.e2e.median > 0:
                row.e2e_speedup = base.e2e.median / row.e2e.median


__all__ = [
    "ArmRow",
    "Stat",
    "acceptance",
    "decode_tps",
    "prompt_tps",
    "summarize",
    "summarize_values",
]
