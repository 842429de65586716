"""path_roots: file flags allowed only for paths that resolve inside the allowed directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llamasc.flags import FlagPolicy, validate_flags


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    inside = tmp_path / "loras"
    outside = tmp_path / "secret"
    inside.mkdir()
    outside.mkdir()
    (inside / "a.gguf").write_bytes(b"GGUF")
    (inside / "b.gguf").write_bytes(b"GGUF")
    (outside / "key.pem").write_text("x")
    return inside, outside


def _policy(inside: Path, flag: str = "--lora", **kw: object) -> FlagPolicy:
    return FlagPolicy.untrusted(path_roots={flag: [inside]}, **kw)


def test_a_file_inside_the_root_is_allowed_and_passed_resolved(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    p = _policy(inside)
    v = validate_flags(["--lora", str(inside / "x" / ".." / "a.gguf")], p)
    assert v.ok, v.problems
    assert v.canonical == ("--lora", str((inside / "a.gguf").resolve()))


def test_lists_and_scaled_forms_check_every_file(roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    a, b = inside / "a.gguf", inside / "b.gguf"
    assert validate_flags(["--lora", f"{a},{b}"], _policy(inside)).ok
    v = validate_flags(["--lora-scaled", f"{a}:0.5"], _policy(inside, "--lora-scaled"))
    assert v.ok
    assert v.canonical == ("--lora-scaled", f"{a.resolve()}:0.5")
    bad = validate_flags(["--lora", f"{a},{outside / 'key.pem'}"], _policy(inside))
    assert "resolves outside the allowed directories" in bad.problems[0]


@pytest.mark.parametrize(
    ("make_path", "fragment"),
    [
        (lambda i, o: str(o / "key.pem"), "resolves outside"),
        (lambda i, o: str(i / ".." / "secret" / "key.pem"), "resolves outside"),
        (lambda i, o: "a.gguf", "must be an absolute path"),
        (lambda i, o: str(i / "missing.gguf"), "does not exist"),
        (lambda i, o: "", "non-empty path"),
    ],
)
def test_escapes_relative_and_missing_paths_are_refused(
    roots: tuple[Path, Path], make_path: object, fragment: str
) -> None:
    inside, outside = roots
    value = make_path(inside, outside)  # type: ignore[operator]
    v = validate_flags(["--lora", value], _policy(inside))
    assert not v.ok
    assert fragment in v.problems[0]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlinks_are_followed_before_the_check(roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    (inside / "escape.gguf").symlink_to(outside / "key.pem")
    (inside / "alias.gguf").symlink_to(inside / "a.gguf")
    assert not validate_flags(["--lora", str(inside / "escape.gguf")], _policy(inside)).ok
    v = validate_flags(["--lora", str(inside / "alias.gguf")], _policy(inside))
    assert v.ok
    assert v.canonical == ("--lora", str((inside / "a.gguf").resolve()))


def test_roots_are_matched_by_any_spelling(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    draft = str(inside / "a.gguf")
    for key in ("-md", "--model-draft", "--spec-draft-model"):
        for spelling in ("-md", "--spec-draft-model", "--spec_draft_model"):
            assert validate_flags([spelling, draft], _policy(inside, key)).ok


def test_roots_apply_to_operators_too(roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    op = FlagPolicy.operator(path_roots={"--lora": [inside]})
    assert not validate_flags(["--lora", str(outside / "key.pem")], op).ok
    # without a root for it, an operator may name any file
    assert validate_flags(["--lora", str(outside / "key.pem")], FlagPolicy.operator()).ok


def test_roots_do_not_lift_pool_owned_or_network_flags(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    for flag in ("--model", "--log-file", "--api-key-file", "--video-ffmpeg-dir"):
        v = validate_flags([flag, str(inside / "a.gguf")], _policy(inside, flag))
        assert not v.ok, flag


def test_a_rooted_flag_stays_refused_for_other_file_flags(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    v = validate_flags(["--control-vector", str(inside / "a.gguf")], _policy(inside))
    assert "reads files on the server host" in v.problems[0]
