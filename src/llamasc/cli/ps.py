"""`llamasc ps`: the sidecars of a running daemon, as a table or JSON."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

DEFAULT_DAEMON = "http://127.0.0.1:8402"

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


def daemon_request(
    method: str, path: str, daemon: str, api_key: str | None, params: dict[str, str] | None = None
) -> Any:
    """One call to the daemon's admin API; its errors become LlamascError (one red line)."""
    import httpx

    from llamasc.errors import (
        AuthError,
        DaemonUnreachableError,
        LlamascError,
        NotFoundError,
        RequestError,
        UnknownModelError,
    )

    base = daemon.rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.request(
            method,
            base + path,
            params=params,
            headers=headers,
            timeout=httpx.Timeout(30, connect=5),
        )
    except (httpx.ConnectError, httpx.ConnectTimeout):
        raise DaemonUnreachableError(
            f"no llamasc daemon at {base} (is 'llamasc serve' running?)"
        ) from None
    except httpx.HTTPError as exc:
        raise DaemonUnreachableError(f"cannot talk to the daemon at {base}: {exc}") from None
    except ValueError as exc:  # a malformed --daemon URL
        raise DaemonUnreachableError(f"--daemon {daemon!r} is not a URL: {exc}") from None
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code >= 400:
        message, code = f"the daemon answered {resp.status_code}", ""
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            message = str(data["error"].get("message") or message)
            code = str(data["error"].get("code") or "")
        if resp.status_code == 401:
            raise AuthError(f"{message} (pass --api-key or set LLAMASC_API_KEY)")
        if code == "model_not_found":
            raise UnknownModelError(message)
        if resp.status_code == 404:
            raise NotFoundError(message)
        if resp.status_code == 400:
            raise RequestError(message)
        raise LlamascError(message)
    if not isinstance(data, dict):
        raise DaemonUnreachableError(f"{base} does not answer like a llamasc daemon")
    return data


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
