"""Web page origins as the operator lists them (``--cors-origins``), parsed and normalised."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def normalize_origin(text: str) -> str:
    """``HTTPS://Example.com:443/`` -> ``https://example.com:443``; ``*`` and ``null`` as is.

    Raises ValueError for anything that is not a bare ``scheme://host[:port]``.
    """
    value = text.strip()
    if value in ("*", "null"):
        return value
    url = urlsplit(value)
    try:
        port = url.port
    except ValueError:
        raise ValueError(f"bad port in origin {value!r}") from None
    if url.scheme.lower() not in ("http", "https") or not url.hostname:
        raise ValueError(f"an origin is scheme://host[:port], got {value!r}")
    if url.path not in ("", "/") or url.query or url.fragment or url.username:
        raise ValueError(f"an origin has no path, query or user, got {value!r}")
    host = url.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{url.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def parse_origins(value: str | Iterable[str]) -> tuple[str, ...]:
    """A comma-separated list (or a list) of origins, normalised, without duplicates."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if item.strip():
            origin = normalize_origin(item)
            if origin not in out:
                out.append(origin)
    return tuple(out)


__all__ = ["normalize_origin", "parse_origins"]
