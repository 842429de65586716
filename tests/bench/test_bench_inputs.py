"""Arms, --model options, production flag splitting and the prompt sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamasc.bench.arms import BASELINE_ARM, build_arms, parse_arm_option
from llamasc.bench.models import parse_model_option, select_models, split_production_flags
from llamasc.bench.prompts import default_prompts_path, load_prompts, parse_prompts
from llamasc.errors import ConfigError, DataError, FlagError


def test_default_arms_are_mtp_off_then_mtp_on() -> None:
    arms = build_arms()
    assert [a.name for a in arms] == [BASELINE_ARM, "mtp-on"]
    assert arms[0].flags == ()
    assert set(arms[1].flags) == {"--spec-type", "draft-mtp", "--spec-draft-n-max", "3"}


def test_arm_option_adds_and_replaces() -> None:
    arms = build_arms(
        ["ngram=--spec-type ngram-mod --spec-ngram-mod-n-match 24", "mtp-on=--spec-type draft-mtp"]
    )
    by = {a.name: a.flags for a in arms}
    assert list(by) == [BASELINE_ARM, "mtp-on", "ngram"]
    assert by["mtp-on"] == ("--spec-type", "draft-mtp")
    assert "ngram-mod" in by["ngram"]


def test_arms_option_keeps_a_subset_in_the_given_order() -> None:
    arms = build_arms(["ngram=--spec-type ngram-simple"], ["ngram", "mtp-off"])
    assert [a.name for a in arms] == ["ngram", "mtp-off"]
    with pytest.raises(ConfigError, match="unknown arm"):
        build_arms([], ["nope"])


@pytest.mark.parametrize(
    "text",
    ["evil=--port 1234", "evil=--host 0.0.0.0", "evil=--no-such-flag 3", "evil=--spec-type"],
)
def test_arm_flags_go_through_the_operator_validator(text: str) -> None:
    with pytest.raises(FlagError) as info:
        build_arms([text])
    assert info.value.details


@pytest.mark.parametrize("text", ["noequals", "=--spec-type ngram-mod", "bad name!=x"])
def test_malformed_arm_options(text: str) -> None:
    with pytest.raises(ConfigError):
        build_arms([text])


def test_parse_arm_option_splits_at_the_first_equals_sign() -> None:
    assert parse_arm_option("x=--override-kv a=int:1") == ("x", "--override-kv a=int:1")


@pytest.mark.parametrize(
    ("tokens", "path", "kept", "dropped"),
    [
        (["-m", "a.gguf", "-ngl", "99"], "a.gguf", ["-ngl", "99"], []),
        (
            ["--model", "a.gguf", "--port", "8080", "--jinja"],
            "a.gguf",
            ["--jinja"],
            ["--port", "8080"],
        ),
        (
            ["-np", "4", "-c", "8192", "--temp", "-1"],
            None,
            ["--temp", "-1"],
            ["-np", "4", "-c", "8192"],
        ),
        (
            ["--spec-type", "ngram-mod", "--spec-default", "-fa", "on"],
            None,
            ["-fa", "on"],
            ["--spec-type", "ngram-mod", "--spec-default"],
        ),
        (["--future-flag", "v", "--other"], None, ["--future-flag", "v", "--other"], []),
        (
            ["--ctx-size=4096", "--api-key-file", "k.txt"],
            None,
            [],
            ["--ctx-size=4096", "--api-key-file", "k.txt"],
        ),
    ],
)
def test_split_production_flags(
    tokens: list[str], path: str | None, kept: list[str], dropped: list[str]
) -> None:
    assert split_production_flags(tokens) == (path, kept, dropped)


def test_model_option_and_selection() -> None:
    m = parse_model_option("smol = /models/a b.gguf")
    assert (m.id, m.path) == ("smol", "/models/a b.gguf")
    for bad in ("smol", "=x", "smol="):
        with pytest.raises(ConfigError):
            parse_model_option(bad)
    models = [parse_model_option("a=/a"), parse_model_option("b=/b")]
    assert [x.id for x in select_models(models, ["b", "a", "b"])] == ["b", "a"]
    with pytest.raises(ConfigError, match="unknown model"):
        select_models(models, ["c"])


def test_the_shipped_prompt_set() -> None:
    prompts = load_prompts()
    assert default_prompts_path().name == "bench-prompts.yaml"
    assert 8 <= len(prompts) <= 12
    assert {p.category for p in prompts} == {"code", "prose", "math", "agentic"}
    assert len({p.id for p in prompts}) == len(prompts)
    agentic = [p for p in prompts if p.category == "agentic"]
    assert all(
        p.messages[0]["role"] == "system" and "JSON" in p.messages[0]["content"] for p in agentic
    )


def test_categories_filter_and_unknown_category() -> None:
    assert {p.category for p in load_prompts(categories=["code", "math"])} == {"code", "math"}
    with pytest.raises(DataError, match="unknown category poetry"):
        load_prompts(categories=["poetry"])


def test_jsonl_prompt_sets(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"id": "a", "category": "code", "prompt": "hi"}\n\n'
        '{"id": "b", "messages": [{"role": "user", "content": "yo"}]}\n'
    )
    prompts = load_prompts(path)
    assert [(p.id, p.category) for p in prompts] == [("a", "code"), ("b", "uncategorized")]
    assert prompts[1].messages == ({"role": "user", "content": "yo"},)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prompts: [{id: a, prompt: x}, {id: a, prompt: y}]", "used twice"),
        ("prompts: [{prompt: x}]", "invalid 'id'"),
        ("prompts: [{id: a}]", "needs 'prompt' or 'messages'"),
        ("prompts: [{id: a, messages: [{role: user}]}]", "'role' and 'content'"),
        ("prompts: []", "no prompts"),
        ("other: 1", "expected a 'prompts:' list"),
    ],
)
def test_bad_prompt_sets(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_prompts(text, source="p.yaml")


# well-formed production flags: (flag, value or None) pairs, as a config would hold them
PAIRS = st.lists(
    st.sampled_from(
        [
            ("-m", "x.gguf"),
            ("--model", "y.gguf"),
            ("--port", "8080"),
            ("-c", "4096"),
            ("--ctx-size", "8192"),
            ("-np", "4"),
            ("--jinja", None),
            ("-ngl", "99"),
            ("--spec-type", "ngram-mod"),
            ("--spec-default", None),
            ("--temp", "-1"),
            ("--future-flag", "v"),
            ("--api-key", "k"),
            ("--no-repack", None),
            ("-fa", "on"),
        ]
    ),
    max_size=10,
)
OWNED = {"--port", "-c", "--ctx-size", "-np", "--spec-type", "--spec-default", "--api-key"}


@given(PAIRS)
def test_split_production_flags_keeps_exactly_the_non_owned_pairs(
    pairs: list[tuple[str, str | None]],
) -> None:
    tokens = [t for pair in pairs for t in pair if t is not None]
    path, kept, dropped = split_production_flags(tokens)
    models = [v for f, v in pairs if f in ("-m", "--model")]
    assert path == (models[-1] if models else None)
    expect_kept = [t for f, v in pairs if f not in OWNED | {"-m", "--model"} for t in (f, v) if t]
    expect_dropped = [t for f, v in pairs if f in OWNED for t in (f, v) if t]
    assert (kept, dropped) == (expect_kept, expect_dropped)
