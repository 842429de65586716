"""`llamasc validate-flags`: check llama-server flags with the validator the daemon applies.

The flags may come quoted (``llamasc validate-flags "-c 8192 --top-k 20"``), after ``--``, or
unquoted (``llamasc validate-flags --top-k 20 -c 8192``): unknown options are handed through
as flags, in order. One argument is split like a shell (or read as a JSON list if it starts
with ``[``); several arguments are taken as tokens already split by the shell. Our own
options (``--json``, ``--operator``, ``--model``, ``--llama-server``, ``--help``) are read by
this command, so put llama-server's own ``--model`` inside quotes or after ``--``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from llamasc.flags import Validation

# Pass unknown options (llama-server's flags) through as arguments, and keep `-h` free: a
# short help option would make click read e.g. "-fa on --chat-template x" as a `-h` cluster.
CONTEXT_SETTINGS: dict[str, Any] = {
    "ignore_unknown_options": True,
    "allow_extra_args": True,
    "help_option_names": ["--help"],
}


def validate_flags(
    ctx: typer.Context,
    flags: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="FLAGS...",
            help="llama-server flags: one quoted string, a JSON list, or unquoted tokens.",
            show_default=False,
        ),
    ] = None,
    *,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
    operator: Annotated[
        bool,
        typer.Option("--operator", help="Use the operator policy (trusted config), not untrusted."),
    ] = False,
    llama_server: Annotated[
        str | None,
        typer.Option(
            "--llama-server",
            metavar="PATH",
            help="Check against what this llama-server binary accepts (its --help).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", metavar="ID", help="Model id for the key [default: demo model]."),
    ] = None,
) -> None:
    """Check llama-server flags; exit 0 when valid, 2 (listing every problem) when not."""
    from llamasc.config.models import DEMO_MODEL_ID
    from llamasc.flags import FlagPolicy, load_default_table, table_from_help
    from llamasc.flags import validate_flags as run_validation

    tokens = [*(flags or []), *ctx.args]
    flag_input: str | list[str] = tokens[0] if len(tokens) == 1 else tokens
    if llama_server is not None:
        from llamasc.config import find_llama_server

        table = table_from_help(find_llama_server(llama_server))
    else:
        table = load_default_table()
    policy = FlagPolicy.operator() if operator else FlagPolicy.untrusted()
    result = run_validation(flag_input, policy, table)
    model_id = model or DEMO_MODEL_ID
    if as_json:
        _print_json(result, model_id, policy.mode, table.source)
    else:
        _print_table(result, model_id, policy.mode, table.source)
    if not result.ok:
        raise typer.Exit(2)


def _print_json(result: Validation, model_id: str, mode: str, source: str) -> None:
    import json

    body = result.as_dict()
    body.update(
        model=model_id,
        key=result.key(model_id) if result.ok else None,
        policy=mode,
        table=source,
    )
    typer.echo(json.dumps(body, indent=2, ensure_ascii=False))


def _print_table(result: Validation, model_id: str, mode: str, source: str) -> None:
    from rich.table import Table
    from rich.text import Text

    from llamasc.cli._output import console, err_console
    from llamasc.flags.tokens import quote_tokens

    out = console()
    out.print(Text(f"llama-server flags, {mode} policy, checked against {source}"), soft_wrap=True)
    if result.items:
        table = Table()
        table.add_column("flag", no_wrap=True)
        table.add_column("value", overflow="fold")
        table.add_column("verdict", no_wrap=True)
        table.add_column("reason", overflow="fold")
        for item in result.items:
            verdict = Text("ok", style="green") if item.ok else Text("refused", style="bold red")
            table.add_row(Text(item.flag), Text(item.value or ""), verdict, Text(item.reason))
        out.print(table)
    for warning in result.warnings:
        out.print(Text(f"warning: {warning}", style="yellow"), soft_wrap=True)
    if result.ok:
        canonical = quote_tokens(result.canonical) or "(no flags)"
        out.print(Text(f"canonical: {canonical}"), soft_wrap=True)
        out.print(Text(f"key ({model_id}): {result.key(model_id)}"), soft_wrap=True)
        return
    err = err_console()
    err.print(f"[bold red]error:[/] {len(result.problems)} problem(s) in these flags")
    for problem in result.problems:
        err.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)


__all__ = ["CONTEXT_SETTINGS", "validate_flags"]
