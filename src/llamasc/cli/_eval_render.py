"""Rendering for `llamasc eval`: progress bars with ETA and the result tables (rich)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llamasc.eval import Reporter, RunResult
    from llamasc.eval.ab import Comparison
    from llamasc.eval.agents import AgentReply, PromptSet
    from llamasc.eval.report import RunReport


@contextmanager
def progress() -> Iterator[Reporter]:
    """A rich progress bar with ETA, fed by the core's Reporter hooks."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from llamasc.cli._output import err_console
    from llamasc.eval import Reporter

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console(),
        transient=False,
    )
    current: list[Any] = []

    def start(label: str, total: int, done: int) -> None:
        if not current:
            progress.start()  # lazily: a run that fails before asking prints no empty bar
        current[:] = [progress.add_task(label, total=total, completed=done)]

    def advance() -> None:
        if current:
            progress.advance(current[0])

    def warn(message: str) -> None:
        progress.console.print(f"[yellow]warning:[/] {message}", highlight=False, markup=True)

    try:
        yield Reporter(start=start, advance=advance, warn=warn)
    finally:
        if current:
            progress.stop()


def render_run(result: RunResult) -> None:
    from rich.table import Table

    from llamasc.cli._output import console

    s = result.summary
    table = Table(title=f"{s.benchmark}: {s.label}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    name = {"humaneval": "pass@1", "gsm8k": "accuracy (flexible)"}.get(s.benchmark, "accuracy")
    table.add_row(name, s.score.text())
    if s.strict is not None:
        table.add_row("accuracy (strict)", s.strict.text())
    if s.baseline is not None:
        table.add_row("baseline: always D", s.baseline.text())
    table.add_row("unparseable answers", str(s.unparseable))
    if s.errors:
        table.add_row("refused by the server", str(s.errors))
    for status, count in sorted(s.outcomes.items()):
        table.add_row(f"execution: {status}", str(count))
    if s.latency:
        table.add_row("latency p50 / p90", f"{s.latency['p50']:.2f} / {s.latency['p90']:.2f} s")
    if "generation" in s.throughput:
        table.add_row("generation speed", f"{s.throughput['generation']:.1f} tok/s")
    if "prompt" in s.throughput:
        table.add_row("prompt speed", f"{s.throughput['prompt']:.1f} tok/s")
    table.add_row("asked / reused", f"{result.asked} / {result.reused}")
    console().print(table)
    if len(s.subjects) > 1:
        sub = Table(title="per subject", title_justify="left")
        sub.add_column("subject")
        sub.add_column("accuracy", justify="right")
        for name, score in sorted(s.subjects.items()):
            sub.add_row(name, score.text())
        console().print(sub)
    console().print(f"records: {result.records_path}\nsummary: {result.summary_paths[1]}")


def render_ab(comparisons: list[Comparison], paths: tuple[Path, Path]) -> None:
    from rich.table import Table

    from llamasc.cli._output import console

    first = comparisons[0]
    table = Table(
        title=f"A: {first.a.spec.label}   vs   B: {first.b.spec.label}", title_justify="left"
    )
    for col in ("benchmark", "n", "A", "B", "B - A", "A only", "B only", "ties", "McNemar p"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for c in comparisons:
        p = c.paired
        table.add_row(
            c.benchmark,
            str(p.n),
            f"{p.acc_a * 100:.1f}%",
            f"{p.acc_b * 100:.1f}%",
            f"{p.diff * 100:+.1f} ± {p.diff_se * 100:.1f}",
            str(p.a_only),
            str(p.b_only),
            str(p.both + p.neither),
            f"{p.p_value:.3g}",
        )
    console().print(table)
    for c in comparisons:
        console().print(f"{c.benchmark}: {c.verdict}", highlight=False)
    console().print(f"report: {paths[1]}")


def render_agents(
    prompt_set: PromptSet, model_ids: Sequence[str], replies: Sequence[AgentReply]
) -> None:
    from rich.table import Table

    from llamasc.cli._output import console

    table = Table(title="agent prompts", title_justify="left")
    table.add_column("prompt")
    for m in model_ids:
        table.add_column(m)
    by = {(r.prompt_id, r.model): r for r in replies}
    for p in prompt_set.prompts:
        cells = []
        for m in model_ids:
            r = by[(p.id, m)]
            mark = "error" if r.error else {True: "pass", False: "fail", None: "-"}[r.passed]
            speed = f"{r.tokens_per_s:.0f} tok/s" if r.tokens_per_s else ""
            cells.append(f"{mark} {speed}".strip())
        table.add_row(p.id, *cells)
    console().print(table)


def render_reports(out: Path, reports: Sequence[RunReport]) -> None:
    from rich.table import Table

    from llamasc.cli._output import console

    table = Table(title=f"eval results in {out}", title_justify="left")
    for col in ("benchmark", "run", "endpoint", "n", "accuracy", "95% CI", "unparseable"):
        table.add_column(col, justify="right" if col in ("n", "unparseable") else "left")
    for r in reports:
        s = r.summary
        table.add_row(
            s.benchmark,
            s.label,
            str(s.identity["endpoint"]),
            str(s.score.n),
            f"{s.score.accuracy * 100:.1f}%",
            f"{s.score.low * 100:.1f}-{s.score.high * 100:.1f}",
            str(s.unparseable),
        )
    console().print(table)
