"""Property: random token soups never get a denied flag past the untrusted policy.

The oracle is independent of the policy code: a flag is deniable when the TSV gives it a
security class other than D/E (or it is not a server flag), plus the class-D flags the task
names as operator-only.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llamasc.flags import FlagPolicy, load_default_table, validate_flags
from llamasc.flags.policy import OPERATOR_OWNED

TABLE = load_default_table()
OPERATOR_ONLY_D = {
    "--numa", "--check-tensors", "--cpu-mask", "--cpu-range", "--cpu-strict", "--cpu-mask-batch",
    "--cpu-range-batch", "--cpu-strict-batch", "--spec-draft-cpu-mask", "--spec-draft-cpu-range",
    "--spec-draft-cpu-strict", "--spec-draft-cpu-mask-batch", "--spec-draft-cpu-strict-batch",
}  # fmt: skip
VALUE_CHECKED_C = {"--verbosity"}


def _deniable(canonical: str) -> bool:
    spec = TABLE.get(canonical)
    assert spec is not None
    if canonical in VALUE_CHECKED_C:
        return False
    return not spec.server or bool(spec.classes - {"D", "E"}) or canonical in OPERATOR_ONLY_D


ALL_NAMES = sorted({n for s in TABLE for n in s.names})
DENIED_NAMES = {n for n in ALL_NAMES if _deniable(n)}
assert {"--port", "-m", "--help", "--no-mmap", "--lora", "--rpc", "-p"} <= DENIED_NAMES

junk = st.sampled_from(["", "-", "--", "-1", "x", "on", "8192", "a=b", " ", "-x", "0.5"])
token = st.one_of(
    st.sampled_from(ALL_NAMES),
    st.sampled_from(ALL_NAMES).map(lambda n: f"{n}=1"),
    st.sampled_from(ALL_NAMES).map(lambda n: n.replace("-", "_").replace("_", "-", 2)),
    st.sampled_from(ALL_NAMES).map(lambda n: f" {n}"),
    st.integers(-3, 70000).map(str),
    junk,
)


@given(st.lists(token, max_size=20))
@settings(max_examples=200, deadline=None)
def test_token_soups_never_validate_a_denied_flag(tokens: list[str]) -> None:
    v = validate_flags(tokens)
    named = {TABLE.canonical_name(t.partition("=")[0]) for t in tokens}
    if named & DENIED_NAMES:
        assert not v.ok, tokens
    for item in v.items:
        if item.ok:
            assert item.canonical is not None
            assert not _deniable(item.canonical), item
    if v.ok:
        again = validate_flags(list(v.canonical))
        assert again.ok
        assert again.canonical == v.canonical
        assert not {TABLE.canonical_name(t) for t in v.canonical} & DENIED_NAMES


@given(st.lists(token, max_size=20))
@settings(max_examples=80, deadline=None)
def test_operator_soups_never_validate_pool_owned_exit_or_removed(tokens: list[str]) -> None:
    v = validate_flags(tokens, FlagPolicy.operator())
    for item in v.items:
        if item.ok:
            spec = TABLE.get(item.canonical or "")
            assert spec is not None
            assert spec.server
            # the operator is trusted with everything but what the pool owns
            assert not spec.classes & {"X", "R"}
            assert spec.canonical not in OPERATOR_OWNED
            assert not spec.notes.startswith("preset:")
