"""A/B: two model/flag sets on the same questions, paired per benchmark with McNemar's test."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llamasc.errors import ConfigError
from llamasc.eval.data import Benchmark, Item
from llamasc.eval.run import EvalOptions, Reporter, RunResult, evaluate
from llamasc.eval.stats import Paired, pair, verdict
from llamasc.eval.store import atomic_write_text

# "MODEL:FLAGS": flags start with "-", so a model id may itself contain ":" (qwen2.5:7b)
_SIDE = re.compile(r"^(?P<model>.*?)(?::\s*(?P<flags>-.*))?$", re.DOTALL)


@dataclass(frozen=True)
class Side:
    """One arm of a comparison."""

    model: str | None
    flags: str | None
    endpoint: str | None = None

    @classmethod
    def parse(cls, text: str, endpoint: str | None = None) -> Side:
        """``MODEL``, ``MODEL:FLAGS`` or ``:FLAGS`` (the endpoint's default model)."""
        match = _SIDE.match(text.strip())
        if match is None:  # pragma: no cover - the pattern matches every string
            raise ConfigError(f"cannot read the A/B side {text!r}; use MODEL[:FLAGS]")
        model = match.group("model").strip() or None
        flags = (match.group("flags") or "").strip() or None
        if model is None and flags is None and endpoint is None:
            raise ConfigError("an A/B side needs a model, flags or its own endpoint")
        return cls(model, flags, endpoint)


@dataclass
class Comparison:
    """The paired result of one benchmark."""

    benchmark: str
    a: RunResult
    b: RunResult
    paired: Paired

    @property
    def verdict(self) -> str:
        return verdict(self.paired)

    def to_dict(self) -> dict[str, Any]:
        p = self.paired
        return {
            "benchmark": self.benchmark,
            "a": {"label": self.a.spec.label, "run": self.a.spec.identity()},
            "b": {"label": self.b.spec.label, "run": self.b.spec.identity()},
            "n": p.n,
            "accuracy_a": p.acc_a,
            "accuracy_b": p.acc_b,
            "difference_b_minus_a": p.diff,
            "difference_se": p.diff_se,
            "a_only_correct": p.a_only,
            "b_only_correct": p.b_only,
            "both_correct": p.both,
            "both_wrong": p.neither,
            "mcnemar_exact_p": p.p_value,
            "verdict": self.verdict,
        }


def compare(benchmark: str, a: RunResult, b: RunResult) -> Comparison:
    """Pair A's and B's records by question id (both ran the same questions)."""
    b_by_id = {r["qid"]: bool(r.get("correct")) for r in b.records}
    outcomes = [
        (bool(r.get("correct")), b_by_id[r["qid"]]) for r in a.records if r["qid"] in b_by_id
    ]
    return Comparison(benchmark, a, b, pair(outcomes))


async def run_ab(
    side_a: Side,
    side_b: Side,
    suite: Sequence[tuple[Benchmark, Sequence[Item]]],
    base: EvalOptions,
    reporter: Reporter | None = None,
) -> list[Comparison]:
    """Run (or resume) both sides on each benchmark's items and compare them."""
    comparisons: list[Comparison] = []
    for benchmark, items in suite:
        results = []
        for side in (side_a, side_b):
            opts = replace(
                base,
                model=side.model,
                flags=side.flags,
                endpoint=side.endpoint or base.endpoint,
            )
            results.append(await evaluate(benchmark, items, opts, reporter))
        comparisons.append(compare(benchmark, results[0], results[1]))
    return comparisons


def to_markdown(comparisons: Sequence[Comparison]) -> str:
    lines = ["# A/B comparison", ""]
    if comparisons:
        lines += [
            f"- A: {comparisons[0].a.spec.label} at `{comparisons[0].a.spec.endpoint}`",
            f"- B: {comparisons[0].b.spec.label} at `{comparisons[0].b.spec.endpoint}`",
            "",
        ]
    lines += [
        "| benchmark | n | A | B | B - A | A only | B only | both | neither | McNemar p "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        p = c.paired
        lines.append(
            f"| {c.benchmark} | {p.n} | {p.acc_a * 100:.1f}% | {p.acc_b * 100:.1f}% | "
            f"{p.diff * 100:+.1f} ± {p.diff_se * 100:.1f} pp | {p.a_only} | {p.b_only} | "
            f"{p.both} | {p.neither} | {p.p_value:.3g} | {c.verdict} |"
        )
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, comparisons: Sequence[Comparison]) -> tuple[Path, Path]:
    """``<out>/ab/<runA>-vs-<runB>.json`` and ``.md`` (ids of the first benchmark's runs)."""
    first = comparisons[0]
    stem = out_dir / "ab" / f"{first.a.spec.run_id}-vs-{first.b.spec.run_id}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    payload = {"comparisons": [c.to_dict() for c in comparisons]}
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    atomic_write_text(md_path, to_markdown(comparisons))
    return json_path, md_path


__all__ = ["Comparison", "Side", "compare", "run_ab", "to_markdown", "write_report"]
