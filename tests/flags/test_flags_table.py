"""The shipped table, the --help parser, and tables built from a binary's --help."""

from __future__ import annotations

import stat
import sys
from importlib import resources
from pathlib import Path

import pytest

from llamasc.errors import DiscoveryError
from llamasc.flags import (
    DEFAULT_BASE_ARGS,
    FlagPolicy,
    load_default_table,
    parse_help_text,
    table_from_help,
    validate_flags,
)
from llamasc.flags.help import table_for_help

HELP_FIXTURE = Path(__file__).parent / "fixtures" / "llama-server-b11434-help.txt"


def test_the_table_ships_as_package_data() -> None:
    data = resources.files("llamasc.flags").joinpath("data/llama-server-flags.tsv")
    text = data.read_text(encoding="utf-8")
    assert text.startswith("names\ttakes_value\tvalue_kind")
    table = load_default_table()
    assert table is load_default_table()  # cached
    assert len(table.server_specs()) == 256 + 2  # arg.cpp's server options + legacy mmap/mlock


@pytest.mark.parametrize(
    ("spelling", "canonical", "negative", "arity"),
    [
        ("-c", "--ctx-size", False, 1),
        ("--ctx_size", "--ctx-size", False, 1),
        ("-ngl", "--gpu-layers", False, 1),
        ("--n-gpu-layers", "--gpu-layers", False, 1),
        ("-fa", "--flash-attn", False, 1),
        ("-no-kvu", "--kv-unified", True, 0),
        ("-nr", "--repack", True, 0),
        ("--no-mmproj", "--mmproj-auto", True, 0),
        ("--no-host", "--no-host", False, 0),  # a plain switch, not the negation of --host
        ("-np", "--parallel", False, 1),
        ("--control-vector-layer-range", "--control-vector-layer-range", False, 2),
        ("-md", "--spec-draft-model", False, 1),
        ("--no-mmap", "--mmap", True, 0),
    ],
)
def test_spellings_resolve_like_llama_cpp(
    spelling: str, canonical: str, negative: bool, arity: int
) -> None:
    hit = load_default_table().lookup(spelling)
    assert hit is not None
    spec, is_negative = hit
    assert (spec.canonical, is_negative, spec.arity) == (canonical, negative, arity)


def test_short_names_are_not_underscore_folded() -> None:
    table = load_default_table()
    assert "-no_kvu" not in table
    assert "--no_kv_unified" in table


def test_legacy_mmap_flags_are_listed_as_removed() -> None:
    table = load_default_table()
    for name in ("--mmap", "--no-mmap", "--mlock"):
        spec = table.get(name)
        assert spec is not None
        assert spec.removed
        assert "--load-mode" in spec.notes


def test_help_parser_reads_every_option_block() -> None:
    blocks = parse_help_text(HELP_FIXTURE.read_text(encoding="utf-8"))
    by_first = {b.names[0]: b for b in blocks}
    assert len(blocks) == 256
    assert by_first["-c"].names == ("-c", "--ctx-size")
    assert by_first["-c"].arity == 1
    assert by_first["-h"].names == ("-h", "--help", "--usage")
    assert by_first["-h"].arity == 0
    assert by_first["-fa"].placeholder == "[on|off|auto]"
    assert by_first["--control-vector-layer-range"].arity == 2
    assert by_first["-ot"].arity == 1  # "<tensor name pattern>=<buffer type>,..." is one value
    assert by_first["--jinja"].names == ("--jinja", "--no-jinja")
    assert by_first["--draft"].removed is not None
    assert "use --spec-draft-n-max" in by_first["--draft"].removed


def test_the_fixture_help_matches_the_shipped_table_exactly() -> None:
    blocks = parse_help_text(HELP_FIXTURE.read_text(encoding="utf-8"))
    table = table_for_help(blocks, load_default_table(), binary="llama-server")
    assert table.unknown_to_llamasc == []
    assert table.missing_from_binary == []
    for block in blocks:
        spec = table.get(block.names[0])
        assert spec is not None, block
        assert spec.arity == block.arity, block


SMALL_HELP = """\
----- common params -----

-h,    --help, --usage                  print usage and exit
-c,    --ctx-size N                     size of the prompt context
                                        (env: LLAMA_ARG_CTX_SIZE)
--jinja, --no-jinja                     use jinja
--brand-new-flag N                      something llamasc has never seen
--brand-new-switch                      a new switch
--top-k N                               the argument has been removed. use --new-top-k
"""


def test_help_tables_mark_unknown_and_missing_flags() -> None:
    table = table_for_help(parse_help_text(SMALL_HELP), load_default_table(), binary="x")
    assert set(table.unknown_to_llamasc) == {"--brand-new-flag", "--brand-new-switch"}
    assert "--temp" in table.missing_from_binary
    untrusted = validate_flags("--brand-new-flag 3 --temp 1 --top-k 2 -c 64", table=table)
    assert [i.ok for i in untrusted.items] == [False, False, False, True]
    assert "not in llamasc's table" in untrusted.problems[0]
    assert "unknown to this llama-server" in untrusted.problems[1]
    assert "removed from llama-server; use --new-top-k" in untrusted.problems[2]
    operator = validate_flags("--brand-new-flag 3 --brand-new-switch", FlagPolicy.operator(),
                              table)  # fmt: skip
    assert operator.ok
    assert operator.canonical == ("--brand-new-flag", "3", "--brand-new-switch")
    assert not validate_flags("--brand-new-switch 3", FlagPolicy.operator(), table).ok


def _script(tmp_path: Path, body: str) -> Path:
    exe = tmp_path / "llama-server"
    exe.write_text(f"#!{sys.executable}\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


@pytest.mark.skipif(sys.platform == "win32", reason="shebang scripts")
def test_table_from_help_runs_the_binary_without_llama_arg_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "env.txt"
    exe = _script(
        tmp_path,
        "import os, sys\n"
        f"open({str(log)!r}, 'w').write(' '.join(sorted(os.environ)))\n"
        f"sys.stdout.write({SMALL_HELP!r})",
    )
    monkeypatch.setenv("LLAMA_ARG_CTX_SIZE", "9")
    monkeypatch.setenv("LLAMASC_TEST_MARK", "1")
    table = table_from_help(exe)
    assert "--brand-new-flag" in table.unknown_to_llamasc
    seen = log.read_text().split()
    assert "LLAMA_ARG_CTX_SIZE" not in seen
    assert "LLAMASC_TEST_MARK" in seen
    # cached per (path, mtime, size): a second call does not run the binary
    log.unlink()
    assert table_from_help(exe) is table
    assert not log.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="shebang scripts")
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("import sys; sys.exit(3)", "exited 3"),
        ("print('hello')", "listed 0 options"),
        ("import time; time.sleep(30)", "did not finish"),
    ],
)
def test_table_from_help_reports_a_binary_that_is_not_llama_server(
    tmp_path: Path, body: str, fragment: str
) -> None:
    with pytest.raises(DiscoveryError, match=fragment):
        table_from_help(_script(tmp_path, body), timeout=0.5)


def test_table_from_help_reports_a_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="not found"):
        table_from_help(tmp_path / "nope")


@pytest.mark.real
def test_real_binary_help_parses_and_matches_the_shipped_table(llama_server_bin: Path) -> None:
    table = table_from_help(llama_server_bin)
    assert len(table.server_specs()) >= 200
    # Report the drift clearly: a newer llama.cpp may add or drop options.
    assert table.unknown_to_llamasc == [], (
        f"{llama_server_bin} lists options llamasc's table lacks: {table.unknown_to_llamasc}"
    )
    assert table.missing_from_binary == [], (
        f"llamasc's table has options {llama_server_bin} lacks: {table.missing_from_binary}"
    )
    assert validate_flags(DEFAULT_BASE_ARGS, FlagPolicy.operator(), table).ok
    assert validate_flags("--top-k 20 -c 8192 -fa on", table=table).ok
