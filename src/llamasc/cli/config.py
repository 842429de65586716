"""``llamasc config check FILE``: print what llamasc understood of a config, and its problems."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command("check")
def check(
    file: Annotated[
        str | None, typer.Argument(help="config.yaml (llama-swap) or llamasc TOML/YAML")
    ] = None,
    config_dir: Annotated[
        str | None,
        typer.Option("--config-dir", metavar="DIR", help="Merge the *.yaml fragments of DIR."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Read a config as `llamasc serve` would; exit 2 if it has an error."""
    import dataclasses
    import json

    from rich.markup import escape

    from llamasc.cli._output import console, fail
    from llamasc.config.check import check_config

    if file is None and config_dir is None:
        fail("give a config FILE or --config-dir DIR")
    report = check_config(file, config_dir)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report), indent=2, default=str))
    else:
        out = console()
        out.print(f"[bold]{escape(report.source)}[/] ({report.flavour} config)", highlight=False)
        for m in report.models:
            aliases = f"  aliases: {', '.join(m.aliases)}" if m.aliases else ""
            out.print(
                f"  [bold cyan]{escape(m.id)}[/] {escape(f'[{m.kind}]')}{escape(aliases)}",
                highlight=False,
            )
            if m.command:
                out.print(f"    cmd: {m.command}", highlight=False, markup=False, soft_wrap=True)
            for key, value in m.details.items():
                out.print(f"    {key}: {value}", highlight=False, markup=False, soft_wrap=True)
        for name, members in report.groups.items():
            out.print(f"  group {escape(name)}: {', '.join(members)}", highlight=False)
        if report.preload:
            out.print(f"  preload: {', '.join(report.preload)}", highlight=False)
        for pid, what in report.peers.items():
            out.print(f"  peer {escape(pid)}: {escape(what)}", highlight=False)
        for w in report.warnings:
            out.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
        for e in report.errors:
            out.print(f"[bold red]error:[/] {escape(e)}", highlight=False, soft_wrap=True)
        verdict = "ok" if report.ok else f"{len(report.errors)} error(s)"
        out.print(f"{verdict}, {len(report.warnings)} warning(s)", highlight=False)
    if not report.ok:
        raise typer.Exit(2)
