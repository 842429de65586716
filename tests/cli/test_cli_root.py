from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from llamasc import __version__
from llamasc.cli import app

runner = CliRunner()


def test_help_lists_every_subcommand() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("serve", "validate-flags", "ps", "kill", "bench", "eval"):
        assert name in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from llamasc.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('datasets', 'paramiko', 'matplotlib', 'uvicorn', 'starlette',"
        " 'httpx', 'pydantic') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "HEAVY []" in out.stderr, out.stderr


def test_a_library_error_is_one_red_line_and_an_exit_code() -> None:
    code = (
        "from llamasc.cli import app, main\n"
        "from llamasc.errors import ConfigError\n"
        "@app.command('boom')\n"
        "def boom() -> None:\n"
        "    raise ConfigError('MAX_SIDECARS: must be an integer >= 1, got abc')\n"
        "main(['boom'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == ["error: MAX_SIDECARS: must be an integer >= 1, got abc"]
    assert "Traceback" not in out.stderr
