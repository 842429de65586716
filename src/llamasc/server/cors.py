"""Which web pages may use the daemon: CORS for the origins the operator lists, 403 for others.

With no API key (the default on loopback) the daemon trusts whoever can reach 127.0.0.1, and
every web page the user opens can: a page may send a CORS-"simple" request (``text/plain``,
no preflight) and, if the answer carries ``Access-Control-Allow-Origin``, read it. So:

* ``Access-Control-*`` headers from llama-server are never relayed (the relay drops them);
* a request with an ``Origin`` header (browsers send one on every cross-origin request and on
  every same-origin POST) is refused with 403 unless the origin is listed (``--cors-origins``,
  none by default) or is the daemon's own page on a loopback address;
* a listed origin gets normal CORS answers (preflight included) from Starlette's
  ``CORSMiddleware``;
* with an ``Origin``, a request that carries a body must say ``Content-Type:
  application/json``: the forms and ``text/plain`` bodies a page can send without a preflight
  are refused, so no request that skipped the browser's preflight reaches a route.

Requests without ``Origin`` (curl, SDKs, agents) are not affected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from llamasc.config.origins import parse_origins
from llamasc.errors import ForbiddenError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_ALLOW_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
_OPTION = "--cors-origins"


def split_cors_origins(args: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``--cors-origins`` taken out of operator arguments (BASE_ARGS, a model's args).

    llama-server's own CORS never reaches a client through the pool, so an operator who
    wrote it meant llamasc's: returns (the arguments without it, the origins it listed).
    """
    rest: list[str] = []
    origins: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == _OPTION and i + 1 < len(args):
            origins.extend(parse_origins(args[i + 1]))
            i += 2
            continue
        if tok.startswith(_OPTION + "="):
            origins.extend(parse_origins(tok.partition("=")[2]))
        else:
            rest.append(tok)
        i += 1
    return tuple(rest), tuple(dict.fromkeys(origins))


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class CorsPolicy:
    """The operator's origins, and the decision for one request's ``Origin``."""

    def __init__(self, origins: Iterable[str] = ()) -> None:
        self.origins = frozenset(origins)
        self.any = "*" in self.origins

    def listed(self, origin: str) -> bool:
        return self.any or origin in self.origins

    def refusal(self, origin: str, host: str, method: str, content_type: str | None,
                content_length: str | None) -> ForbiddenError | None:  # fmt: skip
        """Why a request carrying ``Origin: origin`` is refused, or None."""
        if not self.listed(origin) and not self._own_page(origin, host):
            return ForbiddenError(
                f"requests from the web page origin {origin[:200]!r} are not allowed "
                "(an operator can list it with --cors-origins)"
            )
        if method in _BODY_METHODS and not _json(content_type, content_length):
            return ForbiddenError(
                "a request from a web page must send its body as Content-Type: application/json"
            )
        return None

    @staticmethod
    def _own_page(origin: str, host: str) -> bool:
        # A page served by this daemon itself, reached by a loopback address: a page that
        # reaches us through DNS rebinding has its own host name here, never a loopback one.
        return (
            bool(host) and _loopback_host(host) and origin in (f"http://{host}", f"https://{host}")
        )

    def middleware(self, app: ASGIApp) -> CORSMiddleware:
        """Starlette's CORS answers (preflight, allow-origin) for the listed origins."""
        return CORSMiddleware(
            app,
            allow_origins=["*"] if self.any else sorted(self.origins),
            allow_methods=_ALLOW_METHODS,
            allow_headers=["*"],
            expose_headers=["Retry-After"],
            max_age=600,
        )


def _json(content_type: str | None, content_length: str | None) -> bool:
    if content_type is None:
        return content_length is not None and content_length.strip() == "0"
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json"


__all__ = [
    "CorsPolicy",
    "split_cors_origins",
]
