"""`llamasc validate-flags`: exit codes, the table, JSON output and argument handling."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llamasc.cli import app
from llamasc.flags import sidecar_key

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["validate-flags", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


KEY_8192 = sidecar_key("smollm2-135m", ("--ctx-size", "8192", "--top-k", "20"))


@pytest.mark.parametrize(
    "args",
    [
        ["--top-k 20 -c 8192"],
        ["--top-k", "20", "-c", "8192"],
        ["--", "--top-k 20 -c 8192"],
        ["--", "--top-k", "20", "-c", "8192"],
        ["-c 8192 --top-k 20"],
        ["-c", "8192", "--top_k=20"],
        ['["-c", "8192", "--top-k", "20"]'],
    ],
)
def test_valid_flags_print_the_table_canonical_form_and_key(args: list[str]) -> None:
    code, out, err = run(*args)
    assert code == 0, out + err
    assert "--top-k" in out or "--top_k" in out
    assert "canonical: --ctx-size 8192 --top-k 20" in out
    assert f"key (smollm2-135m): {KEY_8192}" in out
    assert err == ""


def test_a_flag_cluster_containing_h_is_not_taken_for_help() -> None:
    code, out, _ = run("-fa on --chat-template chatml")
    assert code == 0
    assert "canonical: --chat-template chatml --flash-attn on" in out


def test_invalid_flags_exit_2_and_list_every_problem() -> None:
    code, out, err = run("--port 1 --top-k x --tpo-p 3 foo")
    assert code == 2
    assert "refused" in out
    assert "4 problem(s)" in err
    for fragment in ("--port: owned by the pool", "--top-k: needs an integer",
                     "did you mean '--top-p'?", "'foo': a value with no flag"):  # fmt: skip
        assert fragment in err
    assert "canonical:" not in out


def test_input_errors_exit_2_too() -> None:
    code, _, err = run("--top-k 'unbalanced")
    assert code == 2
    assert "unbalanced quotes" in err


def test_json_output_is_the_only_thing_on_stdout() -> None:
    code, out, err = run("--json", "-c 8192 --top-k 20")
    assert code == 0
    assert err == ""
    body = json.loads(out)
    assert body["ok"] is True
    assert body["canonical"] == ["--ctx-size", "8192", "--top-k", "20"]
    assert body["key"] == KEY_8192
    assert body["model"] == "smollm2-135m"
    assert body["policy"] == "untrusted"
    assert body["problems"] == []
    assert body["items"][0] == {
        "flag": "-c", "value": "8192", "ok": True, "reason": "ok", "canonical": "--ctx-size",
    }  # fmt: skip


def test_json_output_for_invalid_flags() -> None:
    code, out, err = run("--port", "1", "-lm", "mlock", "--json")
    assert code == 2
    assert err == ""
    body = json.loads(out)
    assert body["ok"] is False
    assert body["key"] is None
    assert body["canonical"] == []
    assert len(body["problems"]) == 2
    assert [i["ok"] for i in body["items"]] == [False, False]


def test_operator_policy_and_model_id() -> None:
    assert run("-lm mlock")[0] == 2
    code, out, _ = run("--operator", "--model", "qwen3-8b", "--json", "-lm mlock")
    assert code == 0
    body = json.loads(out)
    assert body["policy"] == "operator"
    assert body["key"] == sidecar_key("qwen3-8b", ("--load-mode", "mlock"))


def test_values_are_printed_literally_not_as_markup() -> None:
    code, out, _ = run("-r", "[bold red]stop[/bold red]")
    assert code == 0
    assert "[bold red]stop[/bold red]" in out


def test_no_flags_is_valid() -> None:
    code, out, _ = run()
    assert code == 0
    assert "canonical: (no flags)" in out


@pytest.mark.skipif(sys.platform == "win32", reason="shebang scripts")
def test_llama_server_option_checks_against_that_binary(tmp_path: Path) -> None:
    exe = tmp_path / "llama-server"
    help_text = (
        "-c,    --ctx-size N                     size of the prompt context\n"
        "--brand-new-flag N                      new in this build\n"
    )
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({help_text!r})\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    code, out, err = run("--llama-server", str(exe), "--brand-new-flag 3 -c 64")
    assert code == 2
    assert "not in llamasc's table" in err
    assert f"{exe} --help" in out
    code, out, _ = run("--llama-server", str(exe), "--operator", "--top-k 3")
    assert code == 2
    assert "unknown to this llama-server" in out


def _llamasc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamasc", "validate-flags", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_installed_command_handles_a_leading_dash_argument() -> None:
    proc = _llamasc("--json", "--", "-c 8192")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["canonical"] == ["--ctx-size", "8192"]


def test_a_missing_llama_server_is_one_red_line(tmp_path: Path) -> None:
    proc = _llamasc("--llama-server", str(tmp_path / "nope"), "-c 1")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "error:" in proc.stderr
    assert "Traceback" not in proc.stderr
