"""Structural problems: unknown flags, stray values, missing values, padding, and reporting."""

from __future__ import annotations

import pytest

from llamasc.errors import FlagError
from llamasc.flags import FlagPolicy, Validation, validate_flags

STRUCTURE = [
    (["--tpo-k", "3"], "unknown llama-server flag; did you mean '--top-k'?"),
    (["--ctx-sise", "3"], "did you mean '--ctx-size'?"),
    (["--flash_atn", "on"], "did you mean '--flash-attn'?"),
    (["--zzzzzzzz"], "unknown llama-server flag"),
    (["-np8"], "unknown llama-server flag"),
    (["--"], "unknown llama-server flag"),
    (["foo"], "a value with no flag before it"),
    (["-"], "a value with no flag before it"),
    (["-1"], "a value with no flag before it"),
    (["--jinja", "bar"], "'--jinja' takes no value, so this is a stray value"),
    (["--jinja=true"], "takes no value (write it without '=')"),
    (["--no-jinja=1"], "takes no value"),
    (["--top-k"], "needs a value"),
    (["-c", "1", "--top-k"], "needs a value"),
    (["-fa", "--temp", "1"], "followed by the flag '--temp'"),
    (["--top-k", "--temp=1"], "followed by the flag '--temp=1'"),
    (["--top-k ", "20"], "spaces around it; write '--top-k'"),
    ([" --top-k", "20"], "spaces around it; write '--top-k'"),
    (["\t-c", "20"], "spaces around it; write '-c'"),
    (["-c 8192"], "one argument holding spaces"),
    (["--control-vector-layer-range", "1"], "needs 2 values"),
]


@pytest.mark.parametrize(("tokens", "fragment"), STRUCTURE)
def test_structural_problems_are_reported_once(tokens: list[str], fragment: str) -> None:
    v = validate_flags(tokens)
    assert not v.ok
    assert v.canonical == ()
    assert len(v.problems) == 1, v.problems
    assert fragment in v.problems[0]


def test_a_flag_in_a_value_slot_is_judged_as_a_flag_too() -> None:
    v = validate_flags(["-fa", "--port", "8"])
    assert len(v.problems) == 2
    assert "followed by the flag '--port'" in v.problems[0]
    assert v.problems[1].startswith("--port: owned by the pool")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("--presence-penalty -1", ("--presence-penalty", "-1")),
        ("--keep -1 --seed -1", ("--keep", "-1", "--seed", "-1")),
        ("--frequency-penalty -.5", ("--frequency-penalty", "-.5")),
        # llama.cpp takes the next token verbatim: an unknown dash token is a value
        ("-r -x", ("--reverse-prompt", "-x")),
        ("-r '-- stop --'", ("--reverse-prompt", "-- stop --")),
        ("--override-kv a=int:2", ("--override-kv", "a=int:2")),
    ],
)
def test_dash_values_are_taken_like_llama_cpp(text: str, canonical: tuple[str, ...]) -> None:
    v = validate_flags(text)
    assert v.ok, v.problems
    assert v.canonical == canonical


def test_every_problem_is_collected_in_input_order() -> None:
    v = validate_flags("--port 1 --top-k x foo --tpo-p 3 -c 99999999 --help --jinja bar")
    assert not v.ok
    assert [p.split(":")[0] for p in v.problems] == [
        "--port",
        "--top-k",
        "'foo'",
        "'--tpo-p'",
        "-c",
        "--help",
        "'bar'",
    ]
    assert [i.flag for i in v.items] == [
        "--port", "--top-k", "foo", "--tpo-p", "-c", "--help", "--jinja", "bar",
    ]  # fmt: skip
    assert [i.ok for i in v.items] == [False, False, False, False, False, False, True, False]


def test_raise_for_problems_lists_every_problem() -> None:
    v = validate_flags("--port 1 --host x")
    with pytest.raises(FlagError) as err:
        v.raise_for_problems()
    assert err.value.message == "invalid llama-server flags: 2 problems"
    assert err.value.details == tuple(v.problems)
    assert err.value.exit_code == 2
    assert err.value.http_status == 400
    assert err.value.to_envelope()["error"]["details"] == v.problems
    validate_flags("--top-k 1").raise_for_problems()  # valid: no exception


def test_input_problems_come_back_as_a_validation() -> None:
    v = validate_flags("--top-k 'unbalanced")
    assert v == Validation(ok=False, problems=["cannot split the flags: unbalanced quotes"])


def test_verdicts_carry_value_and_canonical_name() -> None:
    v = validate_flags("--n_gpu_layers=12 -nkvo --repeat-penalty 1.1")
    assert [(i.flag, i.value, i.canonical) for i in v.items] == [
        ("--n_gpu_layers", "12", "--gpu-layers"),
        ("-nkvo", None, "--no-kv-offload"),
        ("--repeat-penalty", "1.1", "--repeat-penalty"),
    ]
    two = validate_flags("--control-vector-layer-range 2 9").items[0]
    assert two.value == "2 9"


def test_validation_serialises_to_plain_data() -> None:
    body = validate_flags("-c 512 --port 2").as_dict()
    assert body["ok"] is False
    assert body["canonical"] == []
    assert body["items"][0] == {
        "flag": "-c",
        "value": "512",
        "ok": True,
        "reason": "ok",
        "canonical": "--ctx-size",
    }


def test_json_list_input_is_validated_like_tokens() -> None:
    as_json = validate_flags('["-r", "a b", "--top-k", "4"]')
    as_tokens = validate_flags(["-r", "a b", "--top-k", "4"])
    assert as_json == as_tokens
    assert as_json.canonical == ("--top-k", "4", "--reverse-prompt", "a b")


def test_empty_input_is_valid_and_canonical_is_empty() -> None:
    for empty in ("", "   ", [], "[]"):
        v = validate_flags(empty)
        assert v.ok
        assert v.canonical == ()
        assert v.items == []


def test_policy_argument_is_respected() -> None:
    assert validate_flags("-lm mlock", FlagPolicy.operator()).ok
    assert not validate_flags("-lm mlock", None).ok
