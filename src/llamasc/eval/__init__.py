"""Accuracy evaluation over an OpenAI-compatible endpoint: MMLU, GSM8K, HumanEval, A/B.

Generation only (llama-server exposes no prompt likelihoods): zero-shot chat prompts, answers
extracted by documented rules (``scoring``), generated code run in a sandbox (``sandbox``).
Runs resume from append-only JSONL records (``store``); A/B pairs two runs on the same
questions with McNemar's exact test (``ab``, ``stats``).
"""

from llamasc.eval.ab import Comparison, Side, compare, run_ab
from llamasc.eval.data import BENCHMARKS, DEFAULT_LIMIT, Benchmark, Item, load_items, select
from llamasc.eval.run import EvalOptions, Reporter, RunResult, evaluate
from llamasc.eval.sandbox import ExecResult, SandboxLimits, run_program
from llamasc.eval.stats import Paired, mcnemar_exact, wilson_interval
from llamasc.eval.summary import Score, Summary

__all__ = [
    "BENCHMARKS",
    "DEFAULT_LIMIT",
    "Benchmark",
    "Comparison",
    "EvalOptions",
    "ExecResult",
    "Item",
    "Paired",
    "Reporter",
    "RunResult",
    "SandboxLimits",
    "Score",
    "Side",
    "Summary",
    "compare",
    "evaluate",
    "load_items",
    "mcnemar_exact",
    "run_ab",
    "run_program",
    "select",
    "wilson_interval",
]
