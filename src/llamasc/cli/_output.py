"""Shared rich consoles for the CLI (created lazily so importing the CLI stays cheap)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@cache
def console() -> Console:
    from rich.console import Console

    return Console()


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def fail(message: str, exit_code: int = 2) -> None:
    """Print one red line to stderr and exit (for CLI-level usage errors)."""
    import typer
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code)
