"""Quoting for sh and cmd.exe: property-based round trips plus the nasty known cases."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamasc.errors import RemoteError
from llamasc.remote.quoting import (
    cmd_escape,
    cmd_join,
    cmd_unescape,
    msvc_quote,
    msvc_split,
    posix_join,
    windows_sftp_path,
)

# Printable text including everything the shells treat specially, but no newline/NUL.
ARG = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=30,
)
NASTY = [
    "",
    " ",
    "plain",
    "with space",
    'a"b',
    "trailing\\",
    'x\\"y',
    "\\\\server\\share",
    "a&b|c<d>e^f(g)",
    "50% off",
    "%PATH%",
    "it's",
    "'quoted'",
    "C:\\Program Files\\x\\",
    '{"enable_thinking": false}',
    "tab\there",
    "!bang!",
    "ünï cödé",
]


@given(st.lists(ARG, max_size=6))
def test_posix_join_round_trips_through_a_posix_shell_split(argv: list[str]) -> None:
    assert shlex.split(posix_join(argv)) == argv


@given(st.lists(ARG, min_size=1, max_size=6))
def test_msvc_quote_round_trips(argv: list[str]) -> None:
    assert msvc_split(" ".join(msvc_quote(a) for a in argv)) == argv


@pytest.mark.parametrize("batch", [True, False])
@given(argv=st.lists(ARG.filter(lambda s: "%" not in s), min_size=1, max_size=6))
def test_cmd_join_round_trips_through_cmd_and_msvc(batch: bool, argv: list[str]) -> None:
    assert msvc_split(cmd_unescape(cmd_join(argv, batch=batch), batch=batch)) == argv


@given(st.lists(ARG, min_size=1, max_size=6))
def test_batch_lines_round_trip_with_percent_signs(argv: list[str]) -> None:
    assert msvc_split(cmd_unescape(cmd_join(argv, batch=True), batch=True)) == argv


@pytest.mark.parametrize("arg", NASTY)
def test_known_hard_arguments(arg: str) -> None:
    assert shlex.split(posix_join([arg])) == [arg]
    assert msvc_split(cmd_unescape(cmd_join(["x", arg], batch=True), batch=True)) == ["x", arg]


def test_metacharacters_outside_quotes_get_a_caret_and_inside_stay_literal() -> None:
    assert cmd_join(["a&b"], batch=False) == "a^&b"
    assert cmd_join(["a & b"], batch=False) == '"a & b"'
    # the escaped quote ends cmd's idea of a quoted region: the & after it needs the caret
    assert cmd_join(['x"&y z'], batch=False) == '"x\\"^&y z"'


def test_percent_is_doubled_in_batch_files_and_refused_on_a_command_line() -> None:
    assert cmd_join(["50%"], batch=True) == "50%%"
    with pytest.raises(RemoteError, match="%"):
        cmd_join(["50%"], batch=False)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_line_breaks_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(RemoteError):
        posix_join([bad])
    with pytest.raises(RemoteError):
        msvc_quote(bad)


def test_cmd_escape_leaves_quoted_regions_alone() -> None:
    assert cmd_escape('"a&b" & c', batch=False) == '"a&b" ^& c'


@pytest.mark.parametrize(
    ("path", "sftp"),
    [
        ("C:\\Users\\sam\\x", "/C:/Users/sam/x"),
        ("d:/models/a.gguf", "/d:/models/a.gguf"),
        ("relative\\dir", "relative/dir"),
    ],
)
def test_windows_sftp_path(path: str, sftp: str) -> None:
    assert windows_sftp_path(path) == sftp
