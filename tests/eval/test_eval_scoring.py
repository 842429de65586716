"""Answer extraction on canned replies, including the traps listed in the eval reference."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamasc.eval import prompts
from llamasc.eval.data import Item
from llamasc.eval.grading import grade_gsm8k, grade_mmlu
from llamasc.eval.scoring import (
    extract_code,
    extract_gsm8k_flexible,
    extract_gsm8k_strict,
    extract_mmlu,
    format_number,
    gsm8k_gold,
    humaneval_program,
)


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("Answer: B", "B"),
        ("The capital is Paris.\nAnswer: C", "C"),
        ("**Answer:** D", "D"),
        ("Answer: $\\boxed{A}$", "A"),
        ("answer: b", "B"),  # lower case at the end of its line
        ("Answer: (c).", "C"),
        ("The answer is B", "B"),
        ("The answer is: (D)", "D"),
        # both orders / restated: the last explicit marker wins
        ("Answer: A\nWait, re-reading the options...\nAnswer: C", "C"),
        ("I first thought B is the answer, but Answer: D", "D"),
        ("C is the correct answer.", "C"),
        ("The correct option is A.", "A"),
        ("B", "B"),
        ("(b)", "B"),
        ("D.", "D"),
        ("B) Paris\nbecause it is the capital", "B"),
        # traps: the article "a" is not choice A, nor is a letter inside a word
        ("The answer is a prime number.", None),
        ("Answer: Bob went home", None),
        ("I am not sure.", None),
        ("", None),
        ("a. lowercase list item that is prose", None),
        ("Answer: E", None),
    ],
)
def test_mmlu_extraction(reply: str, letter: str | None) -> None:
    assert extract_mmlu(reply) == letter


@pytest.mark.parametrize(
    ("reply", "strict", "flexible"),
    [
        ("18 + 0 = 18\nAnswer: 18", "18", "18"),
        ("So she makes $18.00 every day.\nAnswer: 18.00", "18", "18"),  # 18.00 == 18
        ("The answer is 18", "18", "18"),  # no trailing period: lm-eval's cot regex gives "1"
        ("The answer is 18.", "18", "18"),
        ("#### 1,450,000", "1450000", "1450000"),  # thousands separators
        ("Total: 2,125 dollars.\nAnswer: $2,125", "2125", "2125"),
        ("It drops by 5, so the answer is -5.", "-5", "-5"),
        ("Answer: 18...", "18", "18"),
        ("We need 3 boxes and then 7 more, giving 10", None, "10"),
        ("The list 1,2,3 ends in 3", None, "3"),  # "1,2,3" is not one hundred twenty-three
        ("Answer: **42**", "42", "42"),
        ("no numbers here", None, None),
        ("Answer: 12\nAnswer: 13", "13", "13"),  # last marker wins
    ],
)
def test_gsm8k_extraction(reply: str, strict: str | None, flexible: str | None) -> None:
    assert format_number(extract_gsm8k_strict(reply)) == strict
    assert format_number(extract_gsm8k_flexible(reply)) == flexible


def test_gsm8k_gold_strips_separators_and_rejects_missing_final() -> None:
    assert gsm8k_gold("... so 1,450,000 in all.\n#### 1,450,000") == Decimal(1450000)
    assert gsm8k_gold("#### -3") == Decimal(-3)
    with pytest.raises(ValueError, match="####"):
        gsm8k_gold("no final line")


def test_gsm8k_grading_reports_strict_and_flexible_apart() -> None:
    item = Item("gsm8k/x", "gsm8k", {"question": "q", "answer": "work\n#### 18"})
    only_flexible = grade_gsm8k(item, "She earns 9 + 9 = 18 dollars")
    assert only_flexible["correct"] is True
    assert only_flexible["correct_strict"] is False
    assert only_flexible["unparseable_strict"] is True
    both = grade_gsm8k(item, "9 + 9 = 18\nAnswer: 18.00")
    assert both["correct"]
    assert both["correct_strict"]
    assert both["extracted_strict"] == "18"


def test_mmlu_grading_counts_unparseable_apart() -> None:
    item = Item(
        "s/x", "mmlu", {"question": "q", "subject": "s", "choices": list("wxyz"), "answer": 3}
    )
    assert grade_mmlu(item, "Answer: D") | {} == {
        "subject": "s",
        "gold": "D",
        "extracted": "D",
        "unparseable": False,
        "correct": True,
    }
    fields = grade_mmlu(item, "I cannot tell")
    assert fields["unparseable"]
    assert not fields["correct"]


@given(st.integers(min_value=-(10**9), max_value=10**9), st.text(alphabet="abc .\n", max_size=30))
def test_gsm8k_any_integer_round_trips(value: int, filler: str) -> None:
    reply = f"{filler}\nAnswer: {value:,}"
    assert extract_gsm8k_strict(reply) == Decimal(value)
    assert extract_gsm8k_flexible(f"{filler} so it is {value:,}.") == Decimal(value)


@given(st.sampled_from("ABCD"), st.text(alphabet="xyz ,.\n", max_size=40))
def test_mmlu_final_marker_always_wins(letter: str, filler: str) -> None:
    assert extract_mmlu(f"Answer: A\n{filler}\nAnswer: {letter}") == letter


ENTRY = "add"
PROMPT = 'def add(a, b):\n    """Add two numbers."""\n'


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a + b\n"),
        (
            "Helper:\n```python\nx = 1\n```\nSolution:\n```py\ndef add(a, b):\n    return a+b\n```",
            "def add(a, b):\n    return a+b\n",
        ),
        ("```python\ndef add(a, b):\n    return a + b", "def add(a, b):\n    return a + b\n"),
        ("    return a + b\n", "    return a + b\n"),  # a plain completion of the body
    ],
)
def test_code_extraction(reply: str, expected: str) -> None:
    assert extract_code(reply, ENTRY) == expected


def test_program_keeps_prompt_helpers_and_runs_check() -> None:
    full = humaneval_program(
        PROMPT, "def add(a, b):\n    return a + b\n", "def check(f): ...", ENTRY
    )
    assert full.startswith(PROMPT)
    assert full.rstrip().endswith("check(add)")
    body = humaneval_program(PROMPT, "    return a + b\n", "def check(f): ...", ENTRY)
    assert PROMPT + "    return a + b\n" in body


def test_prompt_version_changes_with_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    before = prompts.prompt_version("mmlu")
    assert before == prompts.prompt_version("mmlu")
    template, extraction = prompts.TEMPLATES["mmlu"]
    monkeypatch.setitem(prompts.TEMPLATES, "mmlu", (template + " Be brief.", extraction))
    assert prompts.prompt_version("mmlu") != before
    monkeypatch.setitem(prompts.TEMPLATES, "mmlu", (template, extraction + "-next"))
    assert prompts.prompt_version("mmlu") != before


def test_mmlu_prompt_renders_choices_and_keeps_braces() -> None:
    item = Item(
        "s/x",
        "mmlu",
        {
            "question": "  What is {x}?  ",
            "subject": "s",
            "choices": ["1", "2", "3", "4"],
            "answer": 0,
        },
    )
    text = prompts.render(item)
    assert "What is {x}?\n\nA) 1\nB) 2\nC) 3\nD) 4" in text
    assert "Answer: $LETTER" in text
