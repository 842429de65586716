"""``llamasc bench``: speculative decoding / MTP on-off throughput sweeps, resumable.

For each model (from a llama-swap config or ``--model``) and each arm (flag set), a
llama-server is started on the bench host with the model's production flags, warmed up,
sent a fixed prompt set with fixed sampling, and stopped for sure. Every request becomes one
JSONL record; :func:`summarize` turns records into per-model speedups.
"""

from llamasc.bench.arms import BASELINE_ARM, DEFAULT_ARMS, Arm, build_arms, make_arm
from llamasc.bench.llamaswap import SwapConfig, parse_llama_swap
from llamasc.bench.models import BenchModel, parse_model_option, split_production_flags
from llamasc.bench.prompts import Prompt, default_prompts_path, load_prompts, parse_prompts
from llamasc.bench.records import ResultStore, read_records, record_key
from llamasc.bench.report import RENDERERS, render_csv, render_json, render_markdown
from llamasc.bench.run import BenchOptions, BenchOutcome, run_bench
from llamasc.bench.stats import ArmRow, Stat, summarize
from llamasc.bench.sweep import Sweep, SweepConfig, SweepSummary, run_sweep

__all__ = [
    "BASELINE_ARM",
    "DEFAULT_ARMS",
    "RENDERERS",
    "Arm",
    "ArmRow",
    "BenchModel",
    "BenchOptions",
    "BenchOutcome",
    "Prompt",
    "ResultStore",
    "Stat",
    "SwapConfig",
    "Sweep",
    "SweepConfig",
    "SweepSummary",
    "build_arms",
    "default_prompts_path",
    "load_prompts",
    "make_arm",
    "parse_llama_swap",
    "parse_model_option",
    "parse_prompts",
    "read_records",
    "record_key",
    "render_csv",
    "render_json",
    "render_markdown",
    "run_bench",
    "run_sweep",
    "split_production_flags",
    "summarize",
]
