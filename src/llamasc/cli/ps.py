"""`llamasc ps`: the sidecars of a running daemon, as a table or JSON."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from llamasc.client.daemon import DEFAULT_DAEMON_URL, daemon_request

DEFAULT_DAEMON = DEFAULT_DAEMON_URL  # the default of every --daemon option

DaemonOpt = Annotated[
    str,
    typer.Option("--daemon", envvar="LLAMASC_DAEMON", metavar="URL", help="The daemon to ask."),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="LLAMASC_API_KEY", metavar="KEY", show_default=False,
        help="The daemon's API key, if it has one.",
    ),
]  # fmt: skip


def _ago(now: float, then: float | None) -> str:
    if not then:
        return "-"
    s = max(0.0, now - then)
    if s < 60:
        return f"{s:.0f}s ago"
    if s < 3600:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def _memory(memory: Any) -> str:
    """``host 241/236 MiB`` = projected/measured per device (issue 12); ``-`` if unknown."""
    if not isinstance(memory, dict):
        return "-"
    projected = memory.get("projected") or {}
    measured = memory.get("measured") or {}
    parts = []
    for device in sorted({*projected, *measured}):
        p, m = projected.get(device), measured.get(device)
        shown = "/".join("?" if v is None else f"{v / 1024**2:.0f}" for v in (p, m))
        parts.append(f"{device} {shown} MiB")
    return ", ".join(parts) or "-"


def ps(
    *,
    daemon: DaemonOpt = DEFAULT_DAEMON,
    api_key: ApiKeyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """List the daemon's llama-server sidecars."""
    import json

    from rich.table import Table

    from llamasc.cli._output import console

    data = daemon_request("GET", "/sidecars", daemon, api_key)
    sidecars = data.get("sidecars") or []
    if as_json:
        typer.echo(json.dumps(sidecars, indent=2))
        return
    if not sidecars:
        console().print("no sidecars running")
        return
    now = float(data.get("now") or time.time())
    table = Table(box=None, header_style="bold")
    columns = ("HASH", "MODEL", "STATE", "PORT", "PID", "IN FLIGHT", "SERVED", "LAST USED")
    for col in (*columns, "MEMORY"):
        table.add_column(col, no_wrap=True)
    table.add_column("FLAGS", overflow="fold", min_width=24)
    for s in sidecars:
        table.add_row(
            str(s.get("hash", ""))[:8],
            str(s.get("model", "")),
            str(s.get("state", "")),
            str(s.get("port", "")),
            str(s.get("pid") or "-"),
            str(s.get("in_flight", 0)),
            str(s.get("requests_served", 0)),
            _ago(now, s.get("last_used")),
            _memory(s.get("memory")),
            " ".join(s.get("flags") or []) or "-",
        )
    console().print(table)
    if any(s.get("rpc_workers") for s in sidecars):
        _print_rpc_workers(daemon, api_key)


def _print_rpc_workers(daemon: str, api_key: str | None) -> None:
    """One line per RPC worker the sidecars' models are spread over, as /health sees it."""
    from rich.markup import escape

    from llamasc.cli._output import console

    workers = daemon_request("GET", "/health", daemon, api_key).get("rpc_workers") or []
    for w in workers:
        status = "[green]up[/]" if w.get("up") else f"[red]down[/] ({escape(str(w.get('error')))})"
        console().print(f"rpc worker {escape(str(w.get('address')))}: {status}")
