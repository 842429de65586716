"""The daemon's admin API from a client: ``llamasc ps``, ``kill``, ``top``, ``history``,
``models --reload`` and ``eval`` all reach a running daemon through here.

:data:`DEFAULT_DAEMON_URL` is the one place the local daemon's address is written for
clients (the daemon's own default bind is ``config.settings.DEFAULT_BIND``, the same port).
"""

from __future__ import annotations

from typing import Any

from llamasc.errors import (
    AuthError,
    DaemonUnreachableError,
    LlamascError,
    NotFoundError,
    RequestError,
    UnknownModelError,
)

DEFAULT_DAEMON_URL = "http://127.0.0.1:8402"


def daemon_request(
    method: str,
    path: str,
    daemon: str = DEFAULT_DAEMON_URL,
    api_key: str | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One call to the daemon's admin API; its JSON object. Errors become LlamascError
    subclasses with the daemon's own message (the CLI prints them as one red line)."""
    import httpx  # not at import time: the CLI's --help stays light

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
        raise _status_error(resp.status_code, data)
    if not isinstance(data, dict):
        raise DaemonUnreachableError(f"{base} does not answer like a llamasc daemon")
    return data


def _status_error(status: int, data: Any) -> LlamascError:
    message, code = f"the daemon answered {status}", ""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = str(data["error"].get("message") or message)
        code = str(data["error"].get("code") or "")
    if status == 401:
        return AuthError(f"{message} (pass --api-key or set LLAMASC_API_KEY)")
    if code == "model_not_found":
        return UnknownModelError(message)
    if status == 404:
        return NotFoundError(message)
    if status == 400:
        return RequestError(message)
    return LlamascError(message)


__all__ = ["DEFAULT_DAEMON_URL", "daemon_request"]
