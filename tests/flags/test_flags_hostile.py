"""Hostile flag input: every value ends in a refusal (never a crash), the work per input is
bounded, and the canonical form reads the same when it is walked again."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llamasc.cli import app
from llamasc.errors import FlagError
from llamasc.flags import (
    FlagPolicy,
    canonicalize,
    load_default_table,
    merge_flags,
    validate_flags,
)
from llamasc.flags.walk import MAX_STRAYS, MAX_SUGGESTIONS
from llamasc.server.flaggate import FlagGate

HUGE_INT = "--top-k " + "1" * 5000
DEEP_LIST = "[" * 30_000
DEEP_JSON_VALUE = ["--json-schema", "[" * 10_000]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (HUGE_INT, "out of range"),
        ("--seed -" + "9" * 400, "out of range"),
        (DEEP_LIST, "nest too deeply"),
        (DEEP_JSON_VALUE, "nests too deeply"),
    ],
)
def test_hostile_values_are_refused_not_raised(flags: str | list[str], says: str) -> None:
    for policy in (FlagPolicy.untrusted(), FlagPolicy.operator()):
        v = validate_flags(flags, policy)
        assert not v.ok
        assert says in " ".join(v.problems)


def test_gate_turns_hostile_values_into_invalid_flags() -> None:
    gate = FlagGate()
    for header in (HUGE_INT, DEEP_LIST):
        with pytest.raises(FlagError) as err:
            gate.canonical(header)
        assert err.value.code == "invalid_flags"
        assert err.value.http_status == 400


@pytest.mark.parametrize("flags", [HUGE_INT, DEEP_LIST])
def test_validate_flags_cli_prints_one_readable_line_for_hostile_input(flags: str) -> None:
    result = CliRunner().invoke(app, ["validate-flags", "--json", flags])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_a_bug_in_a_check_is_a_refusal_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    import llamasc.flags.validate as validate_mod

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(validate_mod, "check_values", broken)
    v = validate_flags("--top-k 5")
    assert not v.ok
    assert v.problems == ["these flags could not be checked (ZeroDivisionError)"]


# ---------------------------------------------------------------- bounded work


def test_only_the_first_few_unknown_flags_get_a_suggestion() -> None:
    flags = " ".join(f"--top-kk{i:03d}" for i in range(256))
    v = validate_flags(flags)
    assert sum("did you mean" in p for p in v.problems) == MAX_SUGGESTIONS
    # and the walk gives up on noise: the first 32 problems, then how much was left unchecked
    assert len(v.problems) == MAX_STRAYS + 1
    assert v.problems[-1].endswith(f"too many problems; {256 - MAX_STRAYS} more tokens not checked")
    assert "did you mean" in validate_flags("--top-kk").problems[0]


def test_long_unknown_names_get_no_suggestion() -> None:
    v = validate_flags("--top-k" + "x" * 200)
    assert not v.ok
    assert "did you mean" not in v.problems[0]


def test_gate_remembers_refusals_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import llamasc.server.flaggate as gate_mod

    calls: list[str] = []
    real = gate_mod.validate_flags

    def counting(header: str, policy: FlagPolicy) -> object:
        calls.append(header)
        return real(header, policy)

    monkeypatch.setattr(gate_mod, "validate_flags", counting)
    gate = FlagGate()
    bad = " ".join(f"--unknown-{i}" for i in range(20))
    for _ in range(20):
        with pytest.raises(FlagError) as err:
            gate.canonical(bad)
        assert len(err.value.details) == 20
        assert gate.canonical("--top-k 5") == ("--top-k", "5")
    assert calls == [bad, "--top-k 5"]


def test_gate_cache_is_least_recently_used_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import llamasc.server.flaggate as gate_mod

    monkeypatch.setattr(gate_mod, "CACHE_SIZE", 3)
    calls: list[str] = []
    real = gate_mod.validate_flags

    def counting(header: str, policy: FlagPolicy) -> object:
        calls.append(header)
        return real(header, policy)

    monkeypatch.setattr(gate_mod, "validate_flags", counting)
    gate = FlagGate()
    for k in (1, 2, 3, 1, 4, 1, 2):  # 4 evicts 2 (least recently used), not 1
        gate.canonical(f"--top-k {k}")
    assert calls == [f"--top-k {k}" for k in (1, 2, 3, 4, 2)]


# ---------------------------------------------------------------- idempotence


@pytest.mark.parametrize("flags", ["-r=--port", "-r=-c", "--reverse-prompt=--top-k=5"])
def test_an_attached_flag_value_is_refused_like_a_separate_one(flags: str) -> None:
    separate = flags.replace("=", " ", 1)
    for policy in (FlagPolicy.untrusted(), FlagPolicy.operator()):
        assert not validate_flags(flags, policy).ok
        assert not validate_flags(separate, policy).ok
    with pytest.raises(FlagError):
        canonicalize(flags)


def test_an_attached_value_that_only_looks_like_a_flag_is_kept() -> None:
    v = validate_flags("-r=--not-a-flag --seed=-1")
    assert v.ok, v.problems
    assert v.canonical == ("--seed", "-1", "--reverse-prompt", "--not-a-flag")
    assert validate_flags(list(v.canonical)).canonical == v.canonical


TABLE = load_default_table()
SPECS = TABLE.server_specs()
SPELLINGS = sorted({n for s in SPECS for n in s.names})
VALUES = st.one_of(
    st.integers(-5, 70_000).map(str),
    st.sampled_from(
        ["on", "off", "auto", "f16", "q8_0", "none", "0.5", "-1", "", "x", "a=b", "-", "--"]
    ),
    st.text(alphabet="-=ab1 ", max_size=6),
)
# a flag spelling where a value goes (the `-r=--port` family) is tried half of the time
VALUES = st.one_of(VALUES, st.sampled_from(SPELLINGS))


@st.composite
def any_group(draw: st.DrawFn) -> list[str]:
    spec = draw(st.sampled_from(SPECS))
    name = draw(st.sampled_from(spec.names))
    if name.startswith("--") and draw(st.booleans()):
        name = name.replace("-", "_").replace("_", "-", 2)
    values = [draw(VALUES) for _ in range(max(spec.arity, draw(st.integers(0, 1))))]
    if values and draw(st.booleans()):
        return [f"{name}={values[0]}", *values[1:]]
    return [name, *values]


@given(st.lists(any_group(), max_size=4), st.sampled_from(["untrusted", "operator"]))
@example([["-r=--port"]], "untrusted")  # the case of the issue, always tried
@example([["--spec-type=--ctx-size=5"]], "operator")
@settings(max_examples=500, deadline=None)
def test_canonical_form_is_idempotent_over_the_whole_table(
    groups: list[list[str]], mode: str
) -> None:
    policy = FlagPolicy(mode=mode)  # type: ignore[arg-type]
    tokens = [t for g in groups for t in g]
    first = validate_flags(tokens, policy)
    if not first.ok:
        return
    again = validate_flags(list(first.canonical), policy)
    assert again.ok, (tokens, first.canonical, again.problems)
    assert again.canonical == first.canonical
    assert canonicalize(first.canonical) == first.canonical
    assert merge_flags((), first.canonical) == first.canonical
    # the text form the CLI and the daemon's header take reads the same
    from llamasc.flags.tokens import quote_tokens

    assert validate_flags(quote_tokens(first.canonical), policy).canonical == first.canonical
