"""HumanEval execution: each sample (and each canonical solution in the self-check) is run
through the sandbox, in parallel up to a bound."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llamasc.eval.data import Item
from llamasc.eval.sandbox import ExecResult, SandboxLimits, run_check
from llamasc.eval.scoring import humaneval_program, humaneval_solution


def default_exec_concurrency() -> int:
    return max(1, os.cpu_count() or 1)


def program_for(item: Item, code: str) -> str:
    row = item.row
    return humaneval_program(str(row["prompt"]), code, str(row["test"]), str(row["entry_point"]))


async def execute(item: Item, code: str, limits: SandboxLimits | None = None) -> ExecResult:
    """Run one sample's code against the item's tests (the tests run apart from the code, in
    a process it cannot touch, so it cannot forge its own pass)."""
    row = item.row
    entry = str(row["entry_point"])
    solution = humaneval_solution(str(row["prompt"]), code, entry)
    return await run_check(solution, str(row["prompt"]), str(row["test"]), entry, limits)


@dataclass
class SelfCheck:
    """The canonical solutions run through the same sandbox: all must pass."""

    total: int
    passed: int
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (id, status, detail)
    layers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.passed == self.total


async def self_check(
    items: Sequence[Item],
    limits: SandboxLimits | None = None,
    concurrency: int | None = None,
    on_done: Callable[[Item, ExecResult], None] | None = None,
) -> SelfCheck:
    """Run ``prompt + canonical_solution + test + check(entry_point)`` for every item."""
    gate = asyncio.Semaphore(concurrency or default_exec_concurrency())
    results: dict[str, ExecResult] = {}

    async def one(item: Item) -> None:
        async with gate:
            # the canonical solution is a body that continues the prompt
            res = await execute(item, str(item.row["canonical_solution"]), limits)
        results[item.id] = res
        if on_done is not None:
            on_done(item, res)

    async with asyncio.TaskGroup() as tg:
        for item in items:
            tg.create_task(one(item))
    failures = [
        (i.id, results[i.id].status, results[i.id].detail)
        for i in items
        if not results[i.id].passed
    ]
    layers = next((r.layers for r in results.values() if r.layers), [])
    return SelfCheck(
        total=len(items), passed=len(items) - len(failures), failures=failures, layers=layers
    )


__all__ = ["SelfCheck", "default_exec_concurrency", "execute", "program_for", "self_check"]
