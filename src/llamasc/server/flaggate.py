"""X-Agent-Flags: validated once per distinct header value, then served from a small cache."""

from __future__ import annotations

from llamasc.flags import FlagPolicy, validate_flags

_CACHE_SIZE = 1024


class FlagGate:
    """Turns an ``X-Agent-Flags`` value into canonical tokens, or raises FlagError.

    Agents repeat the same header on every request, so accepted values are cached: the hot
    path then costs one dict lookup. Refused values are not cached (they are the rare case
    and their error must list every problem each time).
    """

    def __init__(self, policy: FlagPolicy | None = None) -> None:
        self.policy = policy or FlagPolicy.untrusted()
        self._ok: dict[str, tuple[str, ...]] = {}

    def canonical(self, header: str) -> tuple[str, ...]:
        if not header:
            return ()
        hit = self._ok.get(header)
        if hit is not None:
            return hit
        validation = validate_flags(header, self.policy)
        validation.raise_for_problems()
        if len(self._ok) >= _CACHE_SIZE:
            self._ok.clear()
        self._ok[header] = validation.canonical
        return validation.canonical


__all__ = ["FlagGate"]
