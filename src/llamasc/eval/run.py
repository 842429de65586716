"""One benchmark run against one endpoint: ask what is missing, grade, append, summarise.

Resume is the default: every answer already on disk under the same key is reused. A server
that dies stops the run with one line; everything answered so far stays on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamasc.client import ChatClient, Completion
from llamasc.errors import LlamascError, UpstreamError
from llamasc.eval import grading
from llamasc.eval.data import Benchmark, Item
from llamasc.eval.endpoint import (
    EndpointInfo,
    default_endpoint,
    http_status,
    probe,
    resolve_model,
    server_slots,
)
from llamasc.eval.humaneval import default_exec_concurrency, execute
from llamasc.eval.lock import results_lock
from llamasc.eval.prompts import DEFAULT_MAX_TOKENS, messages, prompt_version
from llamasc.eval.sandbox import SandboxLimits
from llamasc.eval.store import ResultStore, RunSpec
from llamasc.eval.summary import Summary, summarise, write_summary

log = logging.getLogger(__name__)

# Per-question refusals (too long for the context, bad request): scored wrong, not fatal.
_PER_QUESTION_STATUSES = frozenset({400, 413, 422})
_TIMING_KEYS = (
    "prompt_n",
    "prompt_ms",
    "predicted_n",
    "predicted_ms",
    "predicted_per_second",
    "prompt_per_second",
    "cache_n",
)


@dataclass
class EvalOptions:
    """How to run: where, what, how many, how fast, and where the results go."""

    endpoint: str = field(default_factory=default_endpoint)
    model: str | None = None
    flags: str | None = None
    limit: int | None = None
    seed: int = 0
    concurrency: int | None = None
    out_dir: Path = Path("results/eval")
    api_key: str | None = None
    max_tokens: int | None = None
    temperature: float = 0.0
    fresh: bool = False
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    exec_concurrency: int | None = None
    request_timeout: float = 600.0


@dataclass
class Reporter:
    """Progress hooks for the CLI (no-ops by default: the core never prints)."""

    start: Callable[[str, int, int], None] = lambda label, total, done: None
    advance: Callable[[], None] = lambda: None
    warn: Callable[[str], None] = lambda message: None


@dataclass
class RunResult:
    spec: RunSpec
    records_path: Path
    summary: Summary
    summary_paths: tuple[Path, Path]
    records: list[dict[str, Any]]
    asked: int
    reused: int
    corrupt_lines: list[int]
    concurrency: int = 1  # requests in flight at most (--concurrency, else the server's slots)


def canonical_flags(flags: str | None, *, untrusted: bool = False) -> tuple[str, ...]:
    """The validated canonical form of a flag string (the resume key must not care about
    spelling, and a typo must not become a silent label). ``untrusted`` applies the policy a
    llamasc daemon applies to X-Agent-Flags, so a refusal shows before the first question."""
    if not flags or not flags.strip():
        return ()
    from llamasc.flags import FlagPolicy, parse_flag_input, validate_flags

    policy = FlagPolicy.untrusted() if untrusted else FlagPolicy.operator()
    verdict = validate_flags(parse_flag_input(flags), policy)
    verdict.raise_for_problems()
    return tuple(verdict.canonical)


class _ServerGone(LlamascError):
    """Internal: the endpoint failed in a way that is not about one question."""


def _timings(completion: Completion) -> dict[str, Any]:
    return {k: completion.timings[k] for k in _TIMING_KEYS if k in completion.timings}


class _Asker:
    """The workers of one run: ask, grade (execute for HumanEval), append."""

    def __init__(
        self,
        spec: RunSpec,
        store: ResultStore,
        client: ChatClient,
        opts: EvalOptions,
        reporter: Reporter,
    ) -> None:
        self.spec = spec
        self.store = store
        self.client = client
        self.opts = opts
        self.reporter = reporter
        self.exec_gate = asyncio.Semaphore(opts.exec_concurrency or default_exec_concurrency())
        self.records: dict[str, dict[str, Any]] = {}

    def _base(self, item: Item) -> dict[str, Any]:
        return {
            "key": self.spec.key(item.id),
            "qid": item.id,
            "run_id": self.spec.run_id,
            **self.spec.identity(),
        }

    async def ask(self, item: Item) -> None:
        sampling = self.spec.sampling
        start = time.time()
        try:
            completion: Completion | None = await self.client.chat(
                messages(item),
                model=self.spec.model or None,
                max_tokens=sampling["max_tokens"],
                temperature=sampling["temperature"],
                seed=sampling["seed"],
            )
        except UpstreamError as exc:
            # a daemon refusing the flags answers 400 too, but for every question alike
            if http_status(exc) not in _PER_QUESTION_STATUSES or "flags" in str(exc):
                raise _ServerGone(str(exc)) from None
            completion = None
            fields = grading.grade_error(item, str(exc))
        record = self._base(item)
        if completion is not None:
            reply = completion.text
            if item.benchmark == "mmlu":
                fields = grading.grade_mmlu(item, reply)
            elif item.benchmark == "gsm8k":
                fields = grading.grade_gsm8k(item, reply)
            else:
                fields = grading.humaneval_code(item, reply)
                async with self.exec_gate:
                    result = await execute(item, fields["extracted"], self.opts.sandbox)
                fields.update(
                    correct=result.passed,
                    exec_status=result.status,
                    exec_detail=result.detail,
                    exec_s=round(result.duration_s, 3),
                )
            record.update(
                raw=reply,
                finish_reason=completion.finish_reason,
                usage=completion.usage,
                timings=_timings(completion),
                elapsed_s=round(completion.elapsed_s, 4),
            )
            if completion.reasoning:
                record["reasoning"] = completion.reasoning
        record.update(fields)
        record["ts"] = round(start, 3)
        self.store.append(record)
        self.records[record["key"]] = record
        self.reporter.advance()

    async def run(self, todo: Sequence[Item], concurrency: int) -> None:
        queue = list(reversed(todo))

        async def worker() -> None:
            while queue:
                await self.ask(queue.pop())

        tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(todo))))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc


async def evaluate(
    benchmark: Benchmark, items: Sequence[Item], opts: EvalOptions, reporter: Reporter | None = None
) -> RunResult:
    """Run (or resume) one benchmark on ``items`` and write its summary."""
    reporter = reporter or Reporter()
    info = await probe(opts.endpoint, opts.api_key)
    model = resolve_model(info, opts.model)
    flags = canonical_flags(opts.flags, untrusted=info.is_llamasc)
    if flags and not info.is_llamasc:
        reporter.warn(
            f"{info.base_url} is not a llamasc daemon: --flags are recorded as a label only "
            "(start that server with those flags yourself)"
        )
    max_tokens = opts.max_tokens or DEFAULT_MAX_TOKENS[benchmark]
    spec = RunSpec(
        benchmark=benchmark,
        endpoint=info.base_url,
        model=model,
        flags=flags,
        prompt_version=prompt_version(benchmark),
        sampling={"temperature": opts.temperature, "max_tokens": max_tokens, "seed": opts.seed},
    )
    store = ResultStore(opts.out_dir, spec)
    # one writer per results file: a second run of this configuration stops here, naming
    # the first (two writers interleave their answers)
    with results_lock(store.path, " (another run of the same configuration)"):
        return await _run_spec(
            spec=spec, store=store, info=info, items=items, opts=opts, reporter=reporter
        )


async def _run_spec(
    *,
    spec: RunSpec,
    store: ResultStore,
    info: EndpointInfo,
    items: Sequence[Item],
    opts: EvalOptions,
    reporter: Reporter,
) -> RunResult:
    flags = spec.flags
    model = spec.model
    if opts.fresh and (moved := store.fresh()):
        reporter.warn(f"--fresh: the earlier answers were moved to {moved}")
    loaded = store.load()
    if loaded.corrupt_lines:
        reporter.warn(
            f"{store.path}: skipped {len(loaded.corrupt_lines)} corrupt line(s) (line "
            f"{', '.join(map(str, loaded.corrupt_lines[:5]))}); those questions are asked again"
        )
    todo = [it for it in items if spec.key(it.id) not in loaded.records]
    concurrency = opts.concurrency or info.total_slots or 1
    reporter.start(f"{spec.benchmark} {spec.label}", len(items), len(items) - len(todo))
    send_flags = opts.flags if flags and info.is_llamasc else None
    asker: _Asker | None = None
    if todo:
        store.open()
        try:
            async with ChatClient(
                info.base_url,
                api_key=opts.api_key,
                flags=send_flags,
                timeout=opts.request_timeout,
            ) as client:
                if not opts.concurrency and info.is_llamasc and model:
                    concurrency = await server_slots(client, model) or concurrency
                asker = _Asker(spec, store, client, opts, reporter)
                await asker.run(todo, concurrency)
        except _ServerGone as exc:
            kept = len(loaded.records) + (len(asker.records) if asker else 0)
            raise UpstreamError(
                f"{info.base_url} stopped answering ({exc}); {kept} answers are kept in "
                f"{store.path}; rerun the same command to resume"
            ) from None
        finally:
            store.close()
    fresh = asker.records if asker else {}
    records = [fresh.get(spec.key(it.id)) or loaded.records[spec.key(it.id)] for it in items]
    summary = summarise(spec, records)
    paths = write_summary(store.summary_base, summary)
    return RunResult(
        spec=spec,
        records_path=store.path,
        summary=summary,
        summary_paths=paths,
        records=records,
        asked=len(todo),
        reused=len(items) - len(todo),
        corrupt_lines=loaded.corrupt_lines,
        concurrency=concurrency,
    )


__all__ = ["EvalOptions", "Reporter", "RunResult", "canonical_flags", "evaluate"]
