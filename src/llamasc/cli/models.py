"""`llamasc models`: what model discovery finds, with each GGUF's metadata and bad files.

It scans locally with the same settings as ``llamasc serve`` (config file, environment,
options), so it answers "what would the daemon serve?" without one running. ``--reload``
instead asks a running daemon to rescan (``POST /models?reload=1``) and prints what changed.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llamasc.cli.ps import DEFAULT_DAEMON, ApiKeyOpt, DaemonOpt

if TYPE_CHECKING:
    from llamasc.config.catalog import Discovered

_Text = str | None


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def discovered_json(found: Discovered) -> dict[str, Any]:
    """Everything discovery found, paths included (this is local output, not the API)."""
    from llamasc.server.model_meta import model_meta_json

    return {
        "models": [
            {
                "id": e.id,
                "path": str(e.path),
                "mmproj": str(e.mmproj) if e.mmproj else None,
                "error": e.error,
                "meta": model_meta_json(e),
            }
            for e in found.catalog.models.values()
        ],
        "bad": [{"path": str(b.path), "error": b.error} for b in found.bad],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in found.skipped],
        "warnings": found.warnings,
    }


def _print_table(found: Discovered, show_skipped: bool) -> None:
    from rich.table import Table

    from llamasc.cli._output import console, err_console

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("id", no_wrap=True)
    for col in ("type", "arch", "params", "quant", "ctx", "tmpl", "vision"):
        table.add_column(col, no_wrap=True)
    table.add_column("path", overflow="fold")
    for e in found.catalog.models.values():
        m = e.meta
        table.add_row(
            e.id,
            m.kind if m else "?",
            (m.architecture or "-") if m else "-",
            (m.size_label or _human(m.parameters)) if m else "-",
            (m.file_type or "-") if m else "-",
            str(m.context_length) if m and m.context_length else "-",
            ("yes" if m.chat_template else "no") if m else "-",
            "yes" if e.mmproj else "-",
            str(e.path) + (f"  [red]({e.error})[/]" if e.error else ""),
        )
    out = console()
    out.print(table)
    for b in found.bad:
        out.print(f"[red]bad[/]   {b.path}: {b.error}", highlight=False, soft_wrap=True)
    if show_skipped:
        for s in found.skipped:
            out.print(f"[dim]skip[/]  {s.path}: {s.reason}", highlight=False, soft_wrap=True)
    for w in found.warnings:
        err_console().print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)


def models(
    *,
    config: Annotated[
        _Text,
        typer.Option("--config", envvar="LLAMASC_CONFIG", metavar="PATH", help="Config file."),
    ] = None,
    models_dir: Annotated[
        list[str] | None,
        typer.Option("--models-dir", metavar="DIR", help="A models folder (repeatable)."),
    ] = None,
    model_map: Annotated[
        _Text, typer.Option("--model-map", metavar="PATH", help='JSON {"id": "path.gguf"}.')
    ] = None,
    hf_cache: Annotated[
        bool, typer.Option("--hf-cache", help="Include the Hugging Face and llama.cpp caches.")
    ] = False,
    no_mmproj_auto: Annotated[
        bool, typer.Option("--no-mmproj-auto", help="Do not pair vision projectors.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list projectors, drafts and split parts.")
    ] = False,
    reload: Annotated[
        bool, typer.Option("--reload", help="Ask a running daemon to rescan instead.")
    ] = False,
    daemon: DaemonOpt = DEFAULT_DAEMON,
    api_key: ApiKeyOpt = None,
) -> None:
    """List the models discovery finds: id, type, architecture, size, quant, context."""
    if reload:
        from llamasc.client.daemon import daemon_request

        report = daemon_request("POST", "/models", daemon, api_key, params={"reload": "1"})
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        typer.echo(
            f"{report.get('models', 0)} models; added {report.get('added') or '-'}, "
            f"removed {report.get('removed') or '-'}, changed {report.get('changed') or '-'}"
        )
        for bad in report.get("bad") or []:
            typer.echo(f"bad   {bad.get('path')}: {bad.get('error')}")
        return
    from llamasc.config.catalog import build_catalog
    from llamasc.config.settings import load_settings

    cli = {
        "models_dirs": models_dir or None,
        "model_map_file": model_map,
        "hf_cache": hf_cache or None,
        "mmproj_auto": False if no_mmproj_auto else None,
    }
    settings = load_settings(cli, config_path=config)
    # this command prints discovery's warnings itself, once, below the table
    logging.getLogger("llamasc.config").setLevel(logging.ERROR)
    found = build_catalog(settings)
    if as_json:
        typer.echo(json.dumps(discovered_json(found), indent=2))
    else:
        _print_table(found, show_all)
