"""`llamasc kill`: stop sidecars of a running daemon (one, a model's, or all)."""

from __future__ import annotations

from typing import Annotated

import typer

from llamasc.cli.ps import DEFAULT_DAEMON, ApiKeyOpt, DaemonOpt


def kill(
    sidecar: Annotated[
        str | None,
        typer.Argument(metavar="[HASH]", help="A sidecar hash (or a unique prefix of >= 8).",
                       show_default=False),
    ] = None,
    *,
    model: Annotated[str | None, typer.Option("--model", metavar="ID", show_default=False,
                                              help="Stop every sidecar of this model.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Stop every sidecar.")] = False,
    daemon: DaemonOpt = DEFAULT_DAEMON,
    api_key: ApiKeyOpt = None,
) -> None:  # fmt: skip
    """Stop sidecars: HASH, --model ID or --all."""
    from llamasc.cli._output import console, fail
    from llamasc.client.daemon import daemon_request

    if sum((sidecar is not None, model is not None, everything)) != 1:
        fail("say which sidecars to stop: HASH, --model ID or --all (exactly one)")
    if sidecar is not None:
        data = daemon_request("DELETE", f"/sidecars/{sidecar}", daemon, api_key)
    elif model is not None:
        data = daemon_request("DELETE", "/sidecars", daemon, api_key, params={"model": model})
    else:
        data = daemon_request("DELETE", "/sidecars", daemon, api_key, params={"all": "1"})
    stopped = data.get("stopped") or []
    out = console()
    if not stopped:
        out.print("nothing to stop: no sidecar matched")
        return
    out.print(f"stopped {len(stopped)} sidecar{'s' if len(stopped) != 1 else ''}:")
    for s in stopped:
        flags = " ".join(s.get("flags") or []) or "(base flags)"
        out.print(
            f"  {str(s.get('hash', ''))[:8]}  {s.get('model', '')}  port {s.get('port', '-')}  "
            f"{flags}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
