"""`llamasc eval`: accuracy runs (mmlu, gsm8k, humaneval), A/B comparisons, agent prompts.

Each command parses options, calls one core function from ``llamasc.eval`` and renders the
result with rich. Heavy imports (datasets, httpx, yaml) happen inside the command bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from llamasc.cli._eval_render import (
    progress,
    render_ab,
    render_agents,
    render_reports,
    render_run,
)
from llamasc.client.daemon import DEFAULT_DAEMON_URL

if TYPE_CHECKING:
    from llamasc.eval import Benchmark, EvalOptions

T = TypeVar("T")
DEFAULT_DAEMON = DEFAULT_DAEMON_URL

app = typer.Typer(
    name="eval",
    help="Accuracy: mmlu, gsm8k, humaneval, A/B of two model/flag sets, agent prompts.",
    no_args_is_help=True,
    add_completion=False,
)

Endpoint = Annotated[
    str,
    typer.Option(
        "--endpoint",
        envvar="LLAMASC_DAEMON",
        metavar="URL",
        help="A llamasc daemon or any OpenAI-compatible server.",
    ),
]
Model = Annotated[
    str | None, typer.Option("--model", metavar="ID", help="Model id [default: the only one].")
]
Flags = Annotated[
    str | None,
    typer.Option(
        "--flags",
        metavar='"FLAGS"',
        help="llama-server flags, sent as X-Agent-Flags to a llamasc daemon (a label otherwise).",
    ),
]
Limit = Annotated[
    int | None,
    typer.Option(
        "--limit",
        metavar="N",
        help="Questions to ask [default: mmlu 100, gsm8k 50, humaneval all]; 0 = all.",
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Picks the --limit questions; request seed.")]
Concurrency = Annotated[
    int | None,
    typer.Option("--concurrency", metavar="N", help="Requests in flight [default: server slots]."),
]
Out = Annotated[Path, typer.Option("--out", metavar="DIR", help="Where results go.")]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="LLAMASC_API_KEY", metavar="KEY", help="Bearer.")
]
DataFile = Annotated[
    Path | None,
    typer.Option(
        "--data-file", metavar="PATH", help="Local JSONL/Parquet in the dataset's HF schema."
    ),
]
MaxTokens = Annotated[
    int | None, typer.Option("--max-tokens", metavar="N", help="Per answer [default: per task].")
]
Fresh = Annotated[
    bool,
    typer.Option("--fresh/--resume", help="Start over (old answers moved aside) or resume."),
]
ExecConcurrency = Annotated[
    int | None,
    typer.Option("--exec-concurrency", metavar="N", help="Sandboxes at once [default: CPUs]."),
]
ExecTimeout = Annotated[
    float, typer.Option("--exec-timeout", metavar="S", help="Wall-clock seconds per sample.")
]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coro)


def _options(
    *,
    endpoint: str,
    model: str | None,
    flags: str | None,
    seed: int,
    concurrency: int | None,
    out: Path,
    api_key: str | None,
    max_tokens: int | None,
    fresh: bool,
    exec_concurrency: int | None = None,
    exec_timeout: float = 10.0,
) -> EvalOptions:
    from llamasc.eval import EvalOptions, SandboxLimits

    limits = SandboxLimits(timeout_s=exec_timeout, cpu_seconds=max(1, int(exec_timeout)))
    return EvalOptions(
        endpoint=endpoint,
        model=model,
        flags=flags,
        seed=seed,
        concurrency=concurrency,
        out_dir=out,
        api_key=api_key,
        max_tokens=max_tokens,
        fresh=fresh,
        sandbox=limits,
        exec_concurrency=exec_concurrency,
    )


def _items(benchmark: Benchmark, data_file: Path | None, limit: int | None, seed: int) -> Any:
    from llamasc.eval import DEFAULT_LIMIT, load_items, select

    wanted = DEFAULT_LIMIT[benchmark] if limit is None else (limit or None)
    return select(load_items(benchmark, data_file), wanted, seed)


def _bench(
    benchmark: Benchmark, data_file: Path | None, limit: int | None, opts: EvalOptions
) -> None:
    from llamasc.eval import evaluate

    items = _items(benchmark, data_file, limit, opts.seed)
    with progress() as reporter:
        result = _run(evaluate(benchmark, items, opts, reporter))
    render_run(result)


def _benchmark_command(benchmark: Benchmark, doc: str) -> Callable[..., None]:
    """MMLU and GSM8K take the same options; one definition serves both commands."""

    def command(
        *,
        endpoint: Endpoint = DEFAULT_DAEMON,
        model: Model = None,
        flags: Flags = None,
        limit: Limit = None,
        seed: Seed = 0,
        concurrency: Concurrency = None,
        out: Out = Path("results/eval"),
        api_key: ApiKey = None,
        data_file: DataFile = None,
        max_tokens: MaxTokens = None,
        fresh: Fresh = False,
    ) -> None:
        opts = _options(
            endpoint=endpoint,
            model=model,
            flags=flags,
            seed=seed,
            concurrency=concurrency,
            out=out,
            api_key=api_key,
            max_tokens=max_tokens,
            fresh=fresh,
        )
        _bench(benchmark, data_file, limit, opts)

    command.__name__ = benchmark
    command.__doc__ = doc
    return command


app.command("mmlu")(
    _benchmark_command(
        "mmlu",
        """MMLU (cais/mmlu "all", test): zero-shot, 'Answer: X', with the always-D baseline.""",
    )
)
app.command("gsm8k")(
    _benchmark_command(
        "gsm8k",
        """GSM8K (openai/gsm8k "main", test): strict and flexible extraction side by side.""",
    )
)


@app.command("humaneval")
def humaneval(
    *,
    endpoint: Endpoint = DEFAULT_DAEMON,
    model: Model = None,
    flags: Flags = None,
    limit: Limit = None,
    seed: Seed = 0,
    concurrency: Concurrency = None,
    out: Out = Path("results/eval"),
    api_key: ApiKey = None,
    data_file: DataFile = None,
    max_tokens: MaxTokens = None,
    fresh: Fresh = False,
    exec_concurrency: ExecConcurrency = None,
    exec_timeout: ExecTimeout = 10.0,
    self_check: Annotated[
        bool,
        typer.Option("--self-check", help="Run the canonical solutions through the sandbox."),
    ] = False,
) -> None:
    """HumanEval (openai/openai_humaneval): pass@1, each sample in its own sandbox."""
    opts = _options(
        endpoint=endpoint,
        model=model,
        flags=flags,
        seed=seed,
        concurrency=concurrency,
        out=out,
        api_key=api_key,
        max_tokens=max_tokens,
        fresh=fresh,
        exec_concurrency=exec_concurrency,
        exec_timeout=exec_timeout,
    )
    if not self_check:
        _bench("humaneval", data_file, limit, opts)
        return
    from llamasc.cli._output import console
    from llamasc.eval.humaneval import self_check as run_self_check

    items = _items("humaneval", data_file, 0 if limit is None else limit, seed)
    with progress() as reporter:
        reporter.start("humaneval self-check", len(items), 0)
        check = _run(
            run_self_check(items, opts.sandbox, exec_concurrency, lambda i, r: reporter.advance())
        )
    colour = "green" if check.ok else "red"
    console().print(
        f"[{colour}]self-check: {check.passed}/{check.total} canonical solutions pass[/]"
    )
    console().print(f"sandbox layers: {', '.join(check.layers) or 'none'}", highlight=False)
    for task_id, status, detail in check.failures[:20]:
        console().print(f"  {task_id}: {status} {detail}", markup=False, highlight=False)
    if not check.ok:
        raise typer.Exit(1)


@app.command("ab")
def ab(
    *,
    a: Annotated[str, typer.Option("--a", metavar="MODEL[:FLAGS]", help="Side A.")],
    b: Annotated[str, typer.Option("--b", metavar="MODEL[:FLAGS]", help="Side B.")],
    suite: Annotated[
        str, typer.Option("--suite", help="Comma-separated benchmarks.")
    ] = "mmlu,gsm8k,humaneval",
    endpoint: Endpoint = DEFAULT_DAEMON,
    endpoint_a: Annotated[
        str | None, typer.Option("--endpoint-a", metavar="URL", help="Side A's own endpoint.")
    ] = None,
    endpoint_b: Annotated[
        str | None, typer.Option("--endpoint-b", metavar="URL", help="Side B's own endpoint.")
    ] = None,
    limit: Limit = None,
    seed: Seed = 0,
    concurrency: Concurrency = None,
    out: Out = Path("results/eval"),
    api_key: ApiKey = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help="Offline data: DIR/mmlu.jsonl, gsm8k.jsonl, humaneval.jsonl (or .parquet).",
        ),
    ] = None,
    max_tokens: MaxTokens = None,
    fresh: Fresh = False,
    exec_concurrency: ExecConcurrency = None,
    exec_timeout: ExecTimeout = 10.0,
) -> None:
    """Both sides on the same questions (reusing answers on disk); McNemar per benchmark."""
    from llamasc.errors import ConfigError
    from llamasc.eval import BENCHMARKS
    from llamasc.eval.ab import Side, run_ab, write_report

    names = [s.strip() for s in suite.split(",") if s.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise ConfigError(f"--suite takes {', '.join(BENCHMARKS)}; got {suite!r}")
    side_a, side_b = Side.parse(a, endpoint_a), Side.parse(b, endpoint_b)
    opts = _options(
        endpoint=endpoint,
        model=None,
        flags=None,
        seed=seed,
        concurrency=concurrency,
        out=out,
        api_key=api_key,
        max_tokens=max_tokens,
        fresh=fresh,
        exec_concurrency=exec_concurrency,
        exec_timeout=exec_timeout,
    )
    plan = []
    for name in names:
        bench: Benchmark = name  # type: ignore[assignment]
        plan.append((bench, _items(bench, _data_in(data_dir, bench), limit, seed)))
    with progress() as reporter:
        comparisons = _run(run_ab(side_a, side_b, plan, opts, reporter))
    render_ab(comparisons, write_report(out, comparisons))


def _data_in(data_dir: Path | None, benchmark: str) -> Path | None:
    if data_dir is None:
        return None
    for suffix in (".jsonl", ".parquet", ".json"):
        if (data_dir / f"{benchmark}{suffix}").is_file():
            return data_dir / f"{benchmark}{suffix}"
    return None


@app.command("agents")
def agents(
    *,
    models: Annotated[str, typer.Option("--models", metavar="A,B,C", help="Models to compare.")],
    prompts: Annotated[
        Path | None,
        typer.Option("--prompts", metavar="PATH", help="[default: configs/agent-prompts.yaml]"),
    ] = None,
    endpoint: Endpoint = DEFAULT_DAEMON,
    flags: Flags = None,
    seed: Seed = 0,
    out: Out = Path("results/eval"),
    api_key: ApiKey = None,
) -> None:
    """The agent-typed prompts across models: a side-by-side Markdown and HTML report."""

    from llamasc.cli._output import console
    from llamasc.client import ChatClient
    from llamasc.eval.agents import default_prompts_path, load_prompt_set, run_agents
    from llamasc.eval.agents_report import write_reports

    prompt_set = load_prompt_set(prompts or default_prompts_path())
    model_ids = [m.strip() for m in models.split(",") if m.strip()]

    async def go() -> Any:
        async with ChatClient(endpoint, api_key=api_key, flags=flags) as client:
            with progress() as reporter:
                return await run_agents(prompt_set, model_ids, client, seed, reporter)

    replies = _run(go())
    paths = write_reports(out, prompt_set, model_ids, replies)
    render_agents(prompt_set, model_ids, replies)
    console().print(f"report: {paths[2]}\n        {paths[1]}")


@app.command("report")
def report(out: Out = Path("results/eval")) -> None:
    """Summarise every run recorded under --out again."""

    from llamasc.cli._output import console
    from llamasc.eval.report import collect

    reports = collect(out)
    if not reports:
        console().print(f"no eval results under {out}")
        return
    render_reports(out, reports)


__all__ = ["app"]
