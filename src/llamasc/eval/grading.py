"""Turn one reply into the graded fields of its record (pure; HumanEval execution is apart)."""

from __future__ import annotations

from typing import Any

from llamasc.eval.data import Item
from llamasc.eval.scoring import (
    LETTERS,
    extract_code,
    extract_gsm8k_flexible,
    extract_gsm8k_strict,
    extract_mmlu,
    format_number,
    gsm8k_gold,
    numbers_equal,
)


def grade_mmlu(item: Item, reply: str) -> dict[str, Any]:
    gold = LETTERS[int(item.row["answer"])]
    letter = extract_mmlu(reply)
    return {
        "subject": item.row["subject"],
        "gold": gold,
        "extracted": letter,
        "unparseable": letter is None,
        "correct": letter == gold,
    }


def grade_gsm8k(item: Item, reply: str) -> dict[str, Any]:
    """Strict and flexible side by side; ``correct`` (the headline) is the flexible one."""
    gold = gsm8k_gold(str(item.row["answer"]))
    strict = extract_gsm8k_strict(reply)
    flexible = extract_gsm8k_flexible(reply)
    return {
        "gold": format_number(gold),
        "extracted": format_number(flexible),
        "extracted_strict": format_number(strict),
        "unparseable": flexible is None,
        "unparseable_strict": strict is None,
        "correct": numbers_equal(flexible, gold),
        "correct_strict": numbers_equal(strict, gold),
    }


def humaneval_code(item: Item, reply: str) -> dict[str, Any]:
    """The code part of a HumanEval record (execution adds ``correct``)."""
    code = extract_code(reply, str(item.row["entry_point"]))
    return {"gold": None, "extracted": code, "unparseable": not code.strip()}


def grade_error(item: Item, message: str) -> dict[str, Any]:
    """A question the server refused (e.g. longer than the context): scored wrong."""
    fields: dict[str, Any] = {
        "gold": None,
        "extracted": None,
        "unparseable": True,
        "correct": False,
        "error": message,
    }
    if item.benchmark == "mmlu":
        fields["subject"] = item.row["subject"]
        fields["gold"] = LETTERS[int(item.row["answer"])]
    elif item.benchmark == "gsm8k":
        fields["gold"] = format_number(gsm8k_gold(str(item.row["answer"])))
        fields.update(correct_strict=False, extracted_strict=None, unparseable_strict=True)
    return fields


__all__ = ["grade_error", "grade_gsm8k", "grade_mmlu", "humaneval_code"]
