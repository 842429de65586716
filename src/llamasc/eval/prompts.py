"""The chat prompts, zero-shot and generation-only, and their versions.

A prompt's version is a hash of its template text and of its extraction rule's version, so
editing either makes a resumed run ask again instead of reusing answers to another prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from llamasc.eval.data import Benchmark, Item
from llamasc.eval.scoring import GSM8K_EXTRACTION, HUMANEVAL_EXTRACTION, MMLU_EXTRACTION

# simple-evals' MMLU instruction without its "think step by step": a short answer keeps the
# default max_tokens small; the extraction still finds a letter after a reasoned reply.
MMLU_TEMPLATE = (
    "Answer the following multiple choice question. The last line of your response should "
    "be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of "
    "ABCD.\n\n{question}\n\nA) {A}\nB) {B}\nC) {C}\nD) {D}"
)
GSM8K_TEMPLATE = (
    "Solve this math problem. Give the reasoning steps before giving the final answer on the "
    'last line by itself in the format of "Answer:". Do not add anything other than the '
    'integer answer after "Answer:".\n\n{question}'
)
HUMANEVAL_TEMPLATE = (
    "Complete the following Python function. Reply with the complete function, including its "
    "signature and any imports it needs, in a single ```python code block.\n\n"
    "```python\n{prompt}```"
)

TEMPLATES: dict[Benchmark, tuple[str, str]] = {
    "mmlu": (MMLU_TEMPLATE, MMLU_EXTRACTION),
    "gsm8k": (GSM8K_TEMPLATE, GSM8K_EXTRACTION),
    "humaneval": (HUMANEVAL_TEMPLATE, HUMANEVAL_EXTRACTION),
}

# Enough for a short answer (MMLU), a worked solution (GSM8K) and one function (HumanEval).
DEFAULT_MAX_TOKENS: dict[Benchmark, int] = {"mmlu": 256, "gsm8k": 512, "humaneval": 768}


def prompt_version(benchmark: Benchmark) -> str:
    """``<extraction version>-<12 hex of sha256(template)>``."""
    template, extraction = TEMPLATES[benchmark]
    digest = hashlib.sha256(f"{extraction}\n{template}".encode()).hexdigest()[:12]
    return f"{extraction}-{digest}"


def render(item: Item) -> str:
    """The user message for one item."""
    row: Mapping[str, Any] = item.row
    template = TEMPLATES[item.benchmark][0]
    if item.benchmark == "mmlu":
        a, b, c, d = row["choices"]
        return template.format(question=str(row["question"]).strip(), A=a, B=b, C=c, D=d)
    if item.benchmark == "gsm8k":
        return template.format(question=str(row["question"]).strip())
    return template.format(prompt=row["prompt"])


def messages(item: Item) -> list[dict[str, Any]]:
    """The chat messages for one item (a single user turn: no system prompt, no prefill)."""
    return [{"role": "user", "content": render(item)}]


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "TEMPLATES",
    "messages",
    "prompt_version",
    "render",
]
