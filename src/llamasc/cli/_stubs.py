"""Placeholder commands for subcommands that are registered but not built yet."""

from __future__ import annotations

from collections.abc import Callable

import typer


def not_implemented(name: str) -> Callable[[], None]:
    def command() -> None:
        from llamasc.cli._output import fail

        fail(f"'llamasc {name}' is not implemented yet", exit_code=2)

    command.__name__ = name.replace("-", "_")
    command.__doc__ = f"{name} (not implemented yet)"
    _ = typer  # keep typer import explicit for readers: these are typer commands
    return command
