"""`llamasc bench`: run a sweep (``llamasc bench --host H ...``) or report one
(``llamasc bench report RESULTS.jsonl``). The sweep resumes by default.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from llamasc.bench import ArmRow, BenchOutcome
    from llamasc.bench.events import Event

app = typer.Typer(
    name="bench",
    help=(
        "Throughput sweeps: each model x arm (speculative/MTP on vs off) on a bench host, "
        "resumable. `llamasc bench --host H ...` runs; `llamasc bench report FILE` reports."
    ),
    add_completion=False,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _csv(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def _note(message: str, *, markup: bool = True) -> None:
    """One line on stderr, never wrapped (so it stays greppable)."""
    from llamasc.cli._output import err_console

    err_console().print(message, highlight=False, soft_wrap=True, markup=markup)


def esc(text: object) -> str:
    """Text shown inside rich markup (model ids, errors) must not be read as markup."""
    from rich.markup import escape

    return escape(str(text))


class _ProgressView:
    """Turns sweep events into a rich progress bar and a few status lines."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()

    def __call__(self, event: Event) -> None:
        from llamasc.bench import events as ev

        p = self.progress
        if isinstance(event, ev.Prepared):
            self._prepared(event)
        elif isinstance(event, ev.SweepStarted):
            self._started(event)
            p.start()  # only now: nothing is drawn for a bench that fails before it starts
            self.task = p.add_task("starting", total=event.total or 1)
            if event.skipped:
                p.console.print(f"resuming: {event.skipped} request(s) already measured")
            if not event.total:
                p.update(self.task, completed=1, description="nothing left to measure")
        elif self.task is None:
            return
        elif isinstance(event, ev.CellStarting):
            p.update(self.task, description=f"{event.model} / {event.arm}: starting server")
        elif isinstance(event, ev.RequestDone):
            rec = event.record
            p.update(self.task, advance=1, description=f"{rec['model']} / {rec['arm']}")
            if rec.get("status") != "ok":
                _note(
                    f"{rec['model']} / {rec['arm']} {rec['prompt_id']}#{rec['rep']}: "
                    f"{rec.get('error')}",
                    markup=False,
                )
        elif isinstance(event, ev.CellUnsupported):
            where = f"{esc(event.model)} / {esc(event.arm)}"
            _note(f"[yellow]{where}: unsupported[/] ({esc(event.error)})")
            p.update(self.task, advance=event.abandoned)
        elif isinstance(event, ev.CellFinished):
            p.update(self.task, advance=event.abandoned)
            if event.error:
                _note(f"[red]{esc(event.model)} / {esc(event.arm)}: {esc(event.error)}[/]")

    def _prepared(self, event: Any) -> None:
        if event.moved_aside:
            _note(f"--fresh: the old results were moved to {event.moved_aside}", markup=False)
        for mid, why in event.skipped_models:
            _note(f"[yellow]skipped model[/] {esc(mid)}: {esc(why)}")
        for mid, dropped in event.models:
            if dropped:
                _note(
                    f"{mid}: bench-owned production flags replaced: {' '.join(dropped)}",
                    markup=False,
                )

    def _started(self, event: Any) -> None:
        if event.torn_tail_bytes:
            _note(
                f"[yellow]warning:[/] dropped a torn last line ({event.torn_tail_bytes} bytes) "
                "left by an interrupted run"
            )
        for name in event.reaped:
            _note(f"[yellow]stopped[/] a llama-server an earlier bench left running ({name})")
        if event.changed_flags:
            _note(
                "[yellow]warning:[/] flags changed since these were measured (--fresh to "
                f"remeasure): {esc(', '.join(event.changed_flags))}"
            )


def _print_outcome(outcome: BenchOutcome) -> None:
    from llamasc.cli._output import console

    out = console()
    s = outcome.summary
    parts = [f"{s.measured} measured", f"{s.skipped} already done"]
    if s.errors:
        parts.append(f"{s.errors} failed requests")
    if s.unsupported:
        parts.append(f"unsupported: {', '.join(s.unsupported)}")
    if s.failed_cells:
        parts.append(f"incomplete: {', '.join(s.failed_cells)} (rerun to resume)")
    out.print("; ".join(parts), highlight=False)
    out.print(
        f"results: {outcome.output}  (llamasc bench report {outcome.output})", highlight=False
    )


@app.callback()
def bench(
    ctx: typer.Context,
    *,
    host: Annotated[
        str,
        typer.Option("--host", metavar="HOST", help="Bench host: an SSH host/alias, or localhost."),
    ] = "localhost",
    from_llama_swap: Annotated[
        str | None,
        typer.Option(
            "--from-llama-swap",
            metavar="PATH",
            help="llama-swap config.yaml for models and production flags; remote:PATH reads it "
            "on the bench host.",
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", metavar="ID=PATH", help="A model by hand (path on the host)."),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--models", metavar="A,B", help="Only these models (ids or aliases)."),
    ] = None,
    arm: Annotated[
        list[str] | None,
        typer.Option(
            "--arm",
            metavar='NAME="FLAGS"',
            help="Add or replace an arm (defaults: mtp-off, and mtp-on = --spec-type "
            "draft-mtp --spec-draft-n-max 3).",
        ),
    ] = None,
    arms: Annotated[
        list[str] | None, typer.Option("--arms", metavar="A,B", help="Only these arms.")
    ] = None,
    ctx_size: Annotated[
        int, typer.Option("--ctx-size", metavar="N", help="Context for every server.")
    ] = 32768,
    parallel: Annotated[int, typer.Option("--parallel", metavar="N", help="Server slots.")] = 1,
    llama_server: Annotated[
        str | None,
        typer.Option(
            "--llama-server",
            metavar="PATH",
            help="llama-server on the host [default: the config's, else PATH's; locally: found].",
        ),
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", metavar="PATH", help="Prompt set (YAML/JSONL).")
    ] = None,
    categories: Annotated[
        list[str] | None,
        typer.Option("--categories", metavar="A,B", help="Only these prompt categories."),
    ] = None,
    reps: Annotated[int, typer.Option("--reps", metavar="N", help="Repetitions per prompt.")] = 3,
    max_tokens: Annotated[int, typer.Option("--max-tokens", metavar="N")] = 256,
    seed: Annotated[int, typer.Option("--seed", metavar="N")] = 42,
    temperature: Annotated[float, typer.Option("--temperature", metavar="T")] = 0.0,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="Results JSONL (appended).")
    ] = Path("bench-results.jsonl"),
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh/--resume",
            help="Start over (the old file is moved aside) or skip what is done.",
        ),
    ] = False,
    retry_unsupported: Annotated[
        bool, typer.Option("--retry-unsupported", help="Retry arms recorded as unsupported.")
    ] = False,
    start_timeout: Annotated[
        float, typer.Option("--start-timeout", metavar="S", help="Per server start.")
    ] = 600.0,
    request_timeout: Annotated[
        float, typer.Option("--request-timeout", metavar="S", help="Per request.")
    ] = 600.0,
    remote_dir: Annotated[
        str | None,
        typer.Option("--remote-dir", metavar="DIR", help="Work directory on the host."),
    ] = None,
    ssh_config: Annotated[
        Path, typer.Option("--ssh-config", metavar="PATH", help="OpenSSH client config.")
    ] = Path("~/.ssh/config"),
    user: Annotated[str | None, typer.Option("--user", metavar="NAME", help="SSH user.")] = None,
    port: Annotated[int | None, typer.Option("--port", metavar="N", help="SSH port.")] = None,
    identity: Annotated[
        list[str] | None, typer.Option("--identity", "-i", metavar="KEY", help="SSH private key.")
    ] = None,
    known_hosts: Annotated[
        Path | None, typer.Option("--known-hosts", metavar="PATH", help="Extra known_hosts file.")
    ] = None,
    accept_new_host_key: Annotated[
        bool,
        typer.Option(
            "--accept-new-host-key", help="Trust an unknown host key and add it to known_hosts."
        ),
    ] = False,
    keep_env: Annotated[
        list[str] | None,
        typer.Option(
            "--keep-env",
            metavar="VAR",
            help="Pass this host environment variable to llama-server (LLAMA_ARG_* and the "
            "like are scrubbed otherwise); repeatable.",
        ),
    ] = None,
) -> None:
    """Run a sweep: each model x arm on the bench host; results appended to --output."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from llamasc.bench import BenchOptions, run_bench
    from llamasc.cli._output import console
    from llamasc.remote.ssh import SSHOptions

    ssh = SSHOptions(
        host=host,
        user=user,
        port=port,
        identity_files=tuple(identity or ()),
        ssh_config=ssh_config.expanduser(),
        known_hosts=known_hosts,
        accept_new_host_key=accept_new_host_key,
    )
    opts = BenchOptions(
        host=host,
        output=output,
        from_llama_swap=from_llama_swap,
        model_options=model or [],
        models=_csv(models),
        arm_options=arm or [],
        arms=_csv(arms),
        ctx_size=ctx_size,
        parallel=parallel,
        llama_server=llama_server,
        prompts=prompts,
        categories=_csv(categories),
        reps=reps,
        max_tokens=max_tokens,
        seed=seed,
        temperature=temperature,
        fresh=fresh,
        retry_unsupported=retry_unsupported,
        start_timeout=start_timeout,
        request_timeout=request_timeout,
        remote_dir=remote_dir,
        ssh=ssh,
        keep_env=tuple(keep_env or ()),
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(),
        transient=False,
    )
    view = _ProgressView(progress)
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        outcome = run_bench(opts, on_event=view)
    finally:
        view.close()
        signal.signal(signal.SIGTERM, previous)
    _print_outcome(outcome)


def _table(rows: list[ArmRow], title: str) -> Any:
    from rich.table import Table

    from llamasc.bench.report import table_cells, table_columns

    columns = table_columns(rows)
    table = Table(title=title, title_justify="left")
    numeric = {"n", "decode tok/s", "speedup", "accept", "prompt tok/s", "TTFT ms", "E2E s"}
    for col in columns:
        if col == "status":
            table.add_column(col, overflow="fold", min_width=8)
        else:
            table.add_column(col, justify="right" if col in numeric else "left", no_wrap=True)
    last_model = None
    for row in rows:
        if last_model is not None and row.model != last_model:
            table.add_section()
        last_model = row.model
        style = "yellow" if row.status != "ok" else None
        cells = table_cells(row, columns)
        cells[-1] = row.status if not row.errors else f"{row.status} ({row.errors} errors)"
        table.add_row(*cells, style=style)
    return table


@app.command("report")
def report(
    results: Annotated[Path, typer.Argument(metavar="RESULTS.jsonl", help="A bench results file.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", metavar="FMT", help="table, md, csv or json.")
    ] = "table",
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", metavar="OUT.png", help="Also draw the speedups (needs matplotlib)."
        ),
    ] = None,
    baseline: Annotated[
        str | None, typer.Option("--baseline", metavar="ARM", help="Arm the speedups divide by.")
    ] = None,
    by_category: Annotated[
        bool, typer.Option("--by-category", help="One row per prompt category.")
    ] = False,
) -> None:
    """Per model: decode tok/s per arm (median ± spread), speedup, acceptance, TTFT."""
    from llamasc.bench import RENDERERS, read_records, summarize
    from llamasc.cli._output import console
    from llamasc.errors import ConfigError

    if fmt not in ("table", *RENDERERS):
        raise ConfigError(f"--format must be table, md, csv or json, got {fmt!r}")
    loaded = read_records(results)
    if loaded.torn_tail:
        _note(
            f"[yellow]warning:[/] {results}: ignoring a torn last line "
            f"({len(loaded.torn_tail)} bytes) from an interrupted run"
        )
    if loaded.bad_lines:
        lines = ", ".join(map(str, loaded.bad_lines[:10]))
        _note(f"[yellow]warning:[/] {results}: ignoring unreadable line(s) {lines}")
    rows = summarize(loaded.records, baseline=baseline, by_category=by_category)
    if not rows:
        raise ConfigError(f"{results}: no bench records")
    if fmt == "table":
        console().print(_table(rows, f"llamasc bench: {results.name}"))
        for row in rows:
            if row.status != "ok" and row.error:
                console().print(
                    f"{row.model} / {row.arm}: {row.error}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
    else:
        typer.echo(RENDERERS[fmt](rows), nl=False)
    if plot is not None:
        from llamasc.bench.plot import plot_speedup

        out = plot_speedup(rows, plot)
        _note(f"plot written to {out}", markup=False)


__all__ = ["app"]
