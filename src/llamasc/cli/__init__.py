"""The ``llamasc`` command: a thin shell over the library.

Only this package prints or exits. Each subcommand lives in its own module and imports what
it needs inside the command body, so ``llamasc --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from llamasc.cli._output import err_console
from llamasc.errors import LlamascError

app = typer.Typer(
    name="llamasc",
    help=(
        "A pool of llama-server processes behind one OpenAI endpoint, with per-request "
        "validated flags, plus speed (bench) and accuracy (eval) measurement of flag sets."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: typer's rich help imports markdown-it and friends and costs ~0.1 s
    # of every `--help`; command output still uses rich.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        from llamasc import __version__

        typer.echo(f"llamasc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_version_callback,
        is_eager=True,
    ),
) -> None:
    """llamasc: llama-server pool, flag validator, bench and eval."""


def _register() -> None:
    """Attach every subcommand. Each module stays import-light (no heavy deps at import)."""
    from llamasc.cli import bench, kill, ps, serve, validate_flags
    from llamasc.cli import eval as eval_cmd

    app.command("serve", help="Run the daemon: one OpenAI endpoint, a pool of llama-servers.")(
        serve.serve
    )
    app.command(
        "validate-flags",
        help="Check llama-server flags as the daemon would.",
        context_settings=validate_flags.CONTEXT_SETTINGS,
    )(validate_flags.validate_flags)
    app.command("ps", help="List the sidecars of a running daemon.")(ps.ps)
    app.command("kill", help="Stop sidecars of a running daemon.")(kill.kill)
    from llamasc.cli import models as models_cmd  # model discovery

    app.command("models", help="List discovered models with their GGUF metadata.")(
        models_cmd.models
    )
    # observability: request history and a live view
    from llamasc.cli import history, top

    app.command("history", help="Show the daemon's request history.")(history.history)
    app.command("top", help="A live view of a daemon's sidecars and queue.")(top.top)
    app.add_typer(bench.app, name="bench", help="Throughput sweeps: speculative/MTP on vs off.")
    app.add_typer(eval_cmd.app, name="eval", help="Accuracy: mmlu, gsm8k, humaneval, A/B.")
    from llamasc.cli import config as config_cmd  # issue 13: llama-swap configs

    app.add_typer(config_cmd.app, name="config", help="Check a config file (llama-swap too).")


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: maps LlamascError to one red line + exit code."""
    try:
        app(args=argv, standalone_mode=True)
    except LlamascError as exc:
        if os.environ.get("LLAMASC_DEBUG") == "1":
            raise
        from rich.markup import escape

        err_console().print(
            f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True
        )
        for detail in exc.details:
            err_console().print(f"  - {detail}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console().print("[yellow]interrupted[/]")
        sys.exit(130)


__all__ = ["app", "main"]
