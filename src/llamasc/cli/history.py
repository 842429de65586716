"""`llamasc history`: the daemon's request history, as a table, JSON or CSV."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from llamasc.cli.ps import DEFAULT_DAEMON, ApiKeyOpt, DaemonOpt
from llamasc.client.daemon import daemon_request

_CSV_COLUMNS = (
    "time", "client", "model", "sidecar", "flags_hash", "route", "status", "queue_wait",
    "load_wait", "ttft", "duration", "prompt_tokens", "completion_tokens", "tokens_per_second",
    "error_code",
)  # fmt: skip


def _s(value: Any) -> str:
    if value is None:
        return "-"
    v = float(value)
    return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.2f}s"


def history(
    *,
    daemon: DaemonOpt = DEFAULT_DAEMON,
    api_key: ApiKeyOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=10000, help="Rows at most.")
    ] = 50,
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model's requests.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Show the daemon's last requests, newest first."""
    import json

    from llamasc.errors import RequestError

    if as_json and as_csv:
        raise RequestError("give --json or --csv, not both")
    params = {"limit": str(limit)}
    if model:
        params["model"] = model
    data = daemon_request("GET", "/api/activity", daemon, api_key, params=params)
    rows: list[dict[str, Any]] = data.get("requests") or []
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if as_csv:
        import csv
        import sys

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else r.get(c) for c in _CSV_COLUMNS])
        return
    from rich.table import Table

    from llamasc.cli._output import console

    if data.get("history") is None:
        console().print("the daemon keeps no request history (--no-history)")
        return
    if not rows:
        console().print("no requests yet")
        return
    table = Table(box=None, header_style="bold")
    for col in ("TIME", "CLIENT", "MODEL", "SIDECAR", "ROUTE", "STATUS", "QUEUE", "LOAD",
                "TTFT", "TOTAL", "PROMPT", "OUT", "TOK/S", "ERROR"):  # fmt: skip
        table.add_column(col, no_wrap=True)
    for r in rows:
        tps = r.get("tokens_per_second")
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(r.get("time") or 0))),
            str(r.get("client") or "-"),
            str(r.get("model") or "-"),
            str(r.get("sidecar") or "-"),
            str(r.get("route") or "-"),
            str(r.get("status") or "-"),
            _s(r.get("queue_wait")),
            _s(r.get("load_wait")),
            _s(r.get("ttft")),
            _s(r.get("duration")),
            str(r.get("prompt_tokens") if r.get("prompt_tokens") is not None else "-"),
            str(r.get("completion_tokens") if r.get("completion_tokens") is not None else "-"),
            f"{tps:.1f}" if isinstance(tps, int | float) else "-",
            str(r.get("error_code") or ""),
        )
    console().print(table)
