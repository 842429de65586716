"""Canonical form, merging and the sidecar key, with property tests."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamasc.errors import FlagError
from llamasc.flags import (
    FlagPolicy,
    canonicalize,
    load_default_table,
    merge_flags,
    sidecar_key,
    validate_flags,
)


@pytest.mark.parametrize(
    ("tokens", "canonical"),
    [
        (["-c", "8192"], ("--ctx-size", "8192")),
        (["--ctx_size", "8192"], ("--ctx-size", "8192")),
        (["--ctx-size=8192"], ("--ctx-size", "8192")),
        (["-fa", "on"], ("--flash-attn", "on")),
        (["--n-gpu-layers", "3"], ("--gpu-layers", "3")),
        (["-ngl", "3", "-c", "1"], ("--ctx-size", "1", "--gpu-layers", "3")),
        (["-c", "1", "-c", "2"], ("--ctx-size", "2")),
        (["--jinja", "--no-jinja"], ("--no-jinja",)),
        (["--no-jinja", "--jinja"], ("--jinja",)),
        (["-nkvo"], ("--no-kv-offload",)),
        (["-nkvo", "-kvo"], ("--kv-offload",)),
        (["-nr"], ("--no-repack",)),
        (["--no-webui"], ("--no-ui",)),
        (["--swa-full", "--swa-full"], ("--swa-full",)),
        (["--temperature", "1", "--temp", "2"], ("--temp", "2")),
        (
            ["--spec-type", "ngram-mod", "-c", "5", "--spec-type", "ngram-simple"],
            ("--ctx-size", "5", "--spec-type", "ngram-mod", "--spec-type", "ngram-simple"),
        ),
        (
            ["-r", "b", "--lora", "x", "-r", "a"],
            ("--reverse-prompt", "b", "--lora", "x", "--reverse-prompt", "a"),
        ),
        (
            ["--control-vector-layer-range", "1", "2", "--control-vector-layer-range", "3", "4"],
            ("--control-vector-layer-range", "3", "4"),
        ),
        ([], ()),
    ],
)
def test_canonical_form(tokens: list[str], canonical: tuple[str, ...]) -> None:
    assert canonicalize(tokens) == canonical


def test_canonicalize_accepts_text_too() -> None:
    assert canonicalize("-c 8 --top_k=3") == ("--ctx-size", "8", "--top-k", "3")


@pytest.mark.parametrize("bad", [["--nope"], ["-c"], ["stray"], ["--jinja=1"]])
def test_canonicalize_refuses_unparseable_tokens(bad: list[str]) -> None:
    with pytest.raises(FlagError):
        canonicalize(bad)


def test_validation_canonical_matches_canonicalize() -> None:
    text = "--top_k=20 -c 8192 -r x --jinja --no-jinja -fa on"
    assert validate_flags(text).canonical == canonicalize(text)


@pytest.mark.parametrize(
    ("base", "user", "merged"),
    [
        (["-c", "32768"], ["--ctx-size", "512"], ("--ctx-size", "512")),
        (["--ctx-size", "32768"], ["-c", "512"], ("--ctx-size", "512")),
        (["--ctx_size", "1"], ["--ctx-size=2"], ("--ctx-size", "2")),
        (["--jinja"], ["--no-jinja"], ("--no-jinja",)),
        (["--no-kv-offload"], ["-kvo"], ("--kv-offload",)),
        (["-ngl", "999", "-c", "9"], ["--top-k", "3"],
         ("--ctx-size", "9", "--gpu-layers", "999", "--top-k", "3")),
        (["--lora", "a", "--lora", "b"], ["--lora", "c"], ("--lora", "c")),
        (["--lora", "a", "-r", "x"], ["-r", "y"], ("--lora", "a", "--reverse-prompt", "y")),
        ([], ["-c", "1"], ("--ctx-size", "1")),
        (["-c", "1"], [], ("--ctx-size", "1")),
    ],
)  # fmt: skip
def test_user_flags_replace_base_flags_across_aliases(
    base: list[str], user: list[str], merged: tuple[str, ...]
) -> None:
    assert merge_flags(base, user) == merged


def test_sidecar_key_is_sha256_of_model_and_canonical_flags() -> None:
    key = sidecar_key("smollm2-135m", ("--ctx-size", "512"))
    payload = json.dumps(["smollm2-135m", ["--ctx-size", "512"]], separators=(",", ":"))
    assert key == hashlib.sha256(payload.encode()).hexdigest()
    assert len(key) == 64
    assert int(key, 16) >= 0
    # an unambiguous encoding: moving text between model id and flags changes the key
    assert sidecar_key("a b", ()) != sidecar_key("a", ("b",))
    assert sidecar_key("m", ("-c 1",)) != sidecar_key("m", ("-c", "1"))
    assert sidecar_key("m", ()) != sidecar_key("n", ())


def test_validation_key_uses_the_canonical_form() -> None:
    a = validate_flags("-c 512 --top-k 20")
    b = validate_flags("--top_k=20 --ctx-size 512")
    assert a.key("m") == b.key("m") == sidecar_key("m", canonicalize("-c 512 --top-k 20"))
    assert a.key("m") != a.key("other")


# ---------------------------------------------------------------- properties

TABLE = load_default_table()
SCALAR_E = [
    s
    for s in TABLE.server_specs()
    if s.classes == frozenset({"E"}) and not s.repeatable and s.arity <= 1
]
REPEATABLE_E = [s for s in TABLE.server_specs() if s.repeatable and s.classes == {"E"}]
values = st.one_of(
    st.integers(-5, 5000).map(str),
    st.sampled_from(["on", "off", "auto", "f16", "q8_0", "none", "0.5", "x", "-1", ""]),
)


@st.composite
def flag_group(draw: st.DrawFn, pool: list) -> list[str]:  # type: ignore[type-arg]
    spec = draw(st.sampled_from(pool))
    name = draw(st.sampled_from(spec.names))
    if name.startswith("--") and draw(st.booleans()):
        name = name.replace("-", "_").replace("_", "-", 2)
    if spec.arity == 0:
        return [name]
    value = draw(values)
    return [f"{name}={value}"] if draw(st.booleans()) else [name, value]


scalar_soup = st.lists(flag_group(SCALAR_E), max_size=12)
mixed_soup = st.lists(st.one_of(flag_group(SCALAR_E), flag_group(REPEATABLE_E)), max_size=12)


@given(mixed_soup)
@settings(max_examples=50, deadline=None)
def test_canonicalisation_is_idempotent(groups: list[list[str]]) -> None:
    tokens = [t for g in groups for t in g]
    once = canonicalize(tokens)
    assert canonicalize(once) == once
    assert merge_flags(once, []) == once


@given(scalar_soup, st.randoms(use_true_random=False))
@settings(max_examples=50, deadline=None)
def test_key_is_invariant_under_reordering_of_distinct_scalar_flags(
    groups: list[list[str]], rnd: object
) -> None:
    seen: set[str] = set()
    distinct = []
    for g in groups:
        name = TABLE.canonical_name(g[0].partition("=")[0])
        assert name is not None
        if name not in seen:
            seen.add(name)
            distinct.append(g)
    shuffled = list(distinct)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a = canonicalize([t for g in distinct for t in g])
    b = canonicalize([t for g in shuffled for t in g])
    assert a == b
    assert sidecar_key("m", a) == sidecar_key("m", b)


@given(scalar_soup, scalar_soup)
@settings(max_examples=50, deadline=None)
def test_merge_lets_every_user_flag_win(base: list[list[str]], user: list[list[str]]) -> None:
    b = [t for g in base for t in g]
    u = [t for g in user for t in g]
    merged = merge_flags(b, u)
    assert merged == canonicalize(merge_flags(b, u))
    user_canon = canonicalize(u)
    # merging the user flags again changes nothing, and each user setting survives verbatim
    assert merge_flags(merged, u) == merged
    assert canonicalize([*canonicalize(b), *u]) == merged
    for name in {TABLE.canonical_name(t) for t in user_canon if t.startswith("-")} - {None}:
        assert name is not None
        assert _setting(merged, name) == _setting(user_canon, name)


def _setting(canonical: tuple[str, ...], name: str) -> tuple[str, ...]:
    """The tokens of one scalar flag (by canonical name) in a canonical list."""
    i = 0
    while i < len(canonical):
        spec = TABLE.get(canonical[i])
        assert spec is not None
        width = 1 + spec.arity
        if spec.canonical == name:
            return canonical[i : i + width]
        i += width
    return ()


def test_operator_and_untrusted_share_the_canonical_form() -> None:
    text = "-ngl 12 -c 2048"
    assert validate_flags(text).canonical == validate_flags(text, FlagPolicy.operator()).canonical
