"""Summaries of a run's records: accuracy with a Wilson interval, unparseable answers,
per-subject accuracy and the always-D baseline (MMLU), strict beside flexible (GSM8K),
execution outcomes (HumanEval), latency and tokens/s from the server's own timings."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llamasc.eval.stats import wilson_interval
from llamasc.eval.store import RunSpec, atomic_write_text


@dataclass
class Score:
    """One accuracy number with its 95% Wilson interval."""

    correct: int
    n: int
    low: float
    high: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @classmethod
    def of(cls, correct: int, n: int) -> Score:
        low, high = wilson_interval(correct, n)
        return cls(correct, n, low, high)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy}

    def text(self) -> str:
        return (
            f"{self.accuracy * 100:.1f}% ({self.correct}/{self.n}, "
            f"95% CI {self.low * 100:.1f}-{self.high * 100:.1f})"
        )


@dataclass
class Summary:
    """Everything the table, the JSON and the Markdown show for one run."""

    benchmark: str
    label: str
    identity: dict[str, Any]
    run_id: str
    score: Score
    unparseable: int
    errors: int
    strict: Score | None = None  # GSM8K strict extraction
    unparseable_strict: int | None = None
    baseline: Score | None = None  # MMLU: always answering "D"
    subjects: dict[str, Score] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)  # HumanEval execution statuses
    latency: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "benchmark": self.benchmark,
            "label": self.label,
            "run": self.identity,
            "run_id": self.run_id,
            "score": self.score.to_dict(),
            "unparseable": self.unparseable,
            "errors": self.errors,
            "latency_s": self.latency,
            "tokens_per_s": self.throughput,
        }
        if self.strict is not None:
            out["strict"] = self.strict.to_dict()
            out["unparseable_strict"] = self.unparseable_strict
        if self.baseline is not None:
            out["baseline_always_d"] = self.baseline.to_dict()
        if self.subjects:
            out["subjects"] = {k: v.to_dict() for k, v in sorted(self.subjects.items())}
        if self.outcomes:
            out["execution"] = dict(self.outcomes)
        return out


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _speed(records: Sequence[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    elapsed = [float(r["elapsed_s"]) for r in records if r.get("elapsed_s") is not None]
    latency: dict[str, float] = {}
    if elapsed:
        latency = {
            "mean": statistics.fmean(elapsed),
            "p50": statistics.median(elapsed),
            "p90": _pct(elapsed, 0.9),
        }
    timings = [r.get("timings") or {} for r in records]
    gen_n = sum(float(t.get("predicted_n", 0) or 0) for t in timings)
    gen_ms = sum(float(t.get("predicted_ms", 0) or 0) for t in timings)
    pp_n = sum(float(t.get("prompt_n", 0) or 0) for t in timings)
    pp_ms = sum(float(t.get("prompt_ms", 0) or 0) for t in timings)
    throughput: dict[str, float] = {}
    if gen_ms > 0:
        throughput["generation"] = gen_n / gen_ms * 1000
        throughput["generated_tokens"] = gen_n
    if pp_ms > 0:
        throughput["prompt"] = pp_n / pp_ms * 1000
    return latency, throughput


def summarise(spec: RunSpec, records: Sequence[dict[str, Any]]) -> Summary:
    """Summarise the records of one run (only those of the questions asked this time)."""
    n = len(records)
    summary = Summary(
        benchmark=spec.benchmark,
        label=spec.label,
        identity=spec.identity(),
        run_id=spec.run_id,
        score=Score.of(sum(bool(r.get("correct")) for r in records), n),
        unparseable=sum(bool(r.get("unparseable")) for r in records),
        errors=sum(1 for r in records if r.get("error")),
    )
    if spec.benchmark == "gsm8k":
        summary.strict = Score.of(sum(bool(r.get("correct_strict")) for r in records), n)
        summary.unparseable_strict = sum(bool(r.get("unparseable_strict")) for r in records)
    if spec.benchmark == "mmlu":
        summary.baseline = Score.of(sum(r.get("gold") == "D" for r in records), n)
        by_subject: dict[str, list[bool]] = {}
        for r in records:
            by_subject.setdefault(str(r.get("subject")), []).append(bool(r.get("correct")))
        summary.subjects = {s: Score.of(sum(v), len(v)) for s, v in by_subject.items()}
    if spec.benchmark == "humaneval":
        summary.outcomes = dict(
            Counter(
                str(r.get("exec_status") or ("error" if r.get("error") else "none"))
                for r in records
            )
        )
    summary.latency, summary.throughput = _speed(records)
    return summary


def to_markdown(s: Summary) -> str:
    """A small Markdown report of one run."""
    ident = s.identity
    lines = [
        f"# {s.benchmark}: {s.label}",
        "",
        f"- endpoint: `{ident['endpoint']}`",
        f"- model: `{ident['model'] or '(server default)'}`",
        f"- flags: `{' '.join(ident['flags']) or '(none)'}`",
        f"- prompt version: `{ident['prompt_version']}`",
        f"- sampling: `{json.dumps(ident['sampling'], sort_keys=True)}`",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    name = "pass@1" if s.benchmark == "humaneval" else "accuracy"
    if s.benchmark == "gsm8k":
        name = "accuracy (flexible)"
    lines.append(f"| {name} | {s.score.text()} |")
    if s.strict is not None:
        lines.append(f"| accuracy (strict) | {s.strict.text()} |")
    if s.baseline is not None:
        lines.append(f"| baseline: always D | {s.baseline.text()} |")
    lines.append(f"| unparseable answers | {s.unparseable} |")
    if s.errors:
        lines.append(f"| refused by the server | {s.errors} |")
    for status, count in sorted(s.outcomes.items()):
        lines.append(f"| execution: {status} | {count} |")
    if s.latency:
        lines.append(
            f"| latency mean / p50 / p90 | {s.latency['mean']:.2f} / {s.latency['p50']:.2f} / "
            f"{s.latency['p90']:.2f} s |"
        )
    if "generation" in s.throughput:
        lines.append(f"| generation speed | {s.throughput['generation']:.1f} tok/s |")
    if "prompt" in s.throughput:
        lines.append(f"| prompt speed | {s.throughput['prompt']:.1f} tok/s |")
    if s.subjects:
        lines += ["", "| subject | accuracy |", "|---|---|"]
        lines += [f"| {k} | {v.text()} |" for k, v in sorted(s.subjects.items())]
    return "\n".join(lines) + "\n"


def write_summary(base: Path, summary: Summary) -> tuple[Path, Path]:
    """``<base>.summary.json`` and ``<base>.summary.md``, each written atomically."""
    json_path = base.with_name(base.name + ".summary.json")
    md_path = base.with_name(base.name + ".summary.md")
    atomic_write_text(json_path, json.dumps(summary.to_dict(), indent=2) + "\n")
    atomic_write_text(md_path, to_markdown(summary))
    return json_path, md_path


__all__ = ["Score", "Summary", "summarise", "to_markdown", "write_summary"]
