"""parse_flag_input: shell-like splitting, JSON lists, size and character limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamasc.errors import FlagError
from llamasc.flags import parse_flag_input, validate_flags
from llamasc.flags.tokens import MAX_BYTES, MAX_TOKENS, quote_tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("--top-k 20 -c 8192", ["--top-k", "20", "-c", "8192"]),
        ("  --jinja\n--temp\t0.5  ", ["--jinja", "--temp", "0.5"]),
        ("-r 'hello world' -r \"a b\"", ["-r", "hello world", "-r", "a b"]),
        ("--grammar ''", ["--grammar", ""]),
        ("--reverse-prompt a\\ b", ["--reverse-prompt", "a b"]),
        # no comments, no expansion: nothing downstream is a shell
        ("-r #x -r $HOME", ["-r", "#x", "-r", "$HOME"]),
        ('["--top-k", "20", "-r", "a b"]', ["--top-k", "20", "-r", "a b"]),
        ('  ["-c", "8192"]', ["-c", "8192"]),
        ("", []),
        ("[]", []),
    ],
)
def test_strings_split_like_a_posix_shell_or_a_json_list(text: str, tokens: list[str]) -> None:
    assert parse_flag_input(text) == tokens


def test_token_sequences_pass_through_unchanged() -> None:
    toks = ("-r", "a b", "--temp", "-1")
    assert parse_flag_input(toks) == list(toks)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("--top-k 'a", "unbalanced quotes"),
        ('-r "abc', "unbalanced quotes"),
        ("-r abc\\", "no escaped character"),
        ('["-c", 8192]', "list of strings"),
        ('[{"-c": "1"}]', "list of strings"),
        ('["-c", ', "do not parse"),
        ("[not json", "do not parse"),
        ("-r a\x00b", "NUL"),
        ("-r a\rb", "carriage return"),
        ("-r \x1b[31mred", "ESC"),
        ("-r a\x7f", "DEL"),
        ("-r a\x9bb", "U+009B"),
        ("-r a\x07", "U+0007"),
    ],
)
def test_bad_text_is_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(FlagError) as err:
        parse_flag_input(text)
    assert err.value.message.startswith("invalid llama-server flags: 1 problem")
    assert any(fragment in d for d in err.value.details), err.value.details


@pytest.mark.parametrize("ch", ["\x00", "\r", "\x1b", "\x01", "\x7f", "\x85"])
def test_control_characters_are_refused_inside_token_lists(ch: str) -> None:
    with pytest.raises(FlagError, match="1 problem") as err:
        parse_flag_input(["-r", f"stop{ch}"])
    assert "token 2 contains a control character" in err.value.details[0]


def test_tab_and_newline_are_allowed_inside_values() -> None:
    grammar = 'root ::= "a"\n\t| "b"'
    assert parse_flag_input(["--grammar", grammar]) == ["--grammar", grammar]
    assert validate_flags(["--grammar", grammar]).ok


def test_unpaired_surrogates_are_refused() -> None:
    with pytest.raises(FlagError) as err:
        parse_flag_input(["-r", "a\ud800"])
    assert "surrogate" in err.value.details[0]
    with pytest.raises(FlagError):
        parse_flag_input("-r a\ud800")


def test_token_count_limit() -> None:
    ok = ["--jinja"] * MAX_TOKENS
    assert len(parse_flag_input(ok)) == MAX_TOKENS
    with pytest.raises(FlagError) as err:
        parse_flag_input([*ok, "--jinja"])
    assert f"too many tokens: {MAX_TOKENS + 1}" in err.value.details[0]


def test_total_size_limit_counts_utf8_bytes() -> None:
    assert parse_flag_input(["-r", "x" * (MAX_BYTES - 2)])
    with pytest.raises(FlagError) as err:
        parse_flag_input(["-r", "é" * (MAX_BYTES // 2)])  # 2 bytes each
    assert "too large" in err.value.details[0]


def test_every_limit_problem_is_listed_at_once() -> None:
    tokens = ["-r\x00"] * (MAX_TOKENS + 1)
    with pytest.raises(FlagError) as err:
        parse_flag_input(tokens)
    assert len(err.value.details) == MAX_TOKENS + 2
    assert err.value.message == f"invalid llama-server flags: {MAX_TOKENS + 2} problems"


def test_oversized_text_is_refused_before_splitting() -> None:
    with pytest.raises(FlagError, match="1 problem"):
        parse_flag_input("-r " + "x" * (3 * MAX_BYTES))


def test_non_string_tokens_are_refused() -> None:
    with pytest.raises(FlagError) as err:
        parse_flag_input(["-c", 8192])  # type: ignore[list-item]
    assert "token 2 is not a string" in err.value.details


printable = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=0, max_size=12
)


@given(st.lists(printable, max_size=12))
def test_quoting_round_trips(tokens: list[str]) -> None:
    """quote_tokens renders what parse_flag_input reads back, token for token."""
    text = quote_tokens(tokens)
    if text.lstrip().startswith("["):
        return  # a leading '[' switches to JSON parsing by design
    assert parse_flag_input(text) == tokens
