"""X-Agent-Flags: validated once per distinct header value, then served from a small LRU."""

from __future__ import annotations

from collections import OrderedDict

from llamasc.errors import FlagError
from llamasc.flags import FlagPolicy, validate_flags
from llamasc.flags.tokens import problems_message

CACHE_SIZE = 1024
# Longer values are validated every time: 1,024 of them at 64 KiB would hold 64 MiB.
CACHE_MAX_LEN = 4096


class FlagGate:
    """Turns an ``X-Agent-Flags`` value into canonical tokens, or raises FlagError.

    Agents repeat the same header on every request, and a hostile client repeats the same
    refused one: both verdicts are kept in a least-recently-used cache, so the hot path costs
    one dict lookup and a flood of one bad header costs its validation once.
    """

    def __init__(self, policy: FlagPolicy | None = None) -> None:
        self.policy = policy or FlagPolicy.untrusted()
        self._seen: OrderedDict[str, tuple[str, ...] | FlagError] = OrderedDict()

    def canonical(self, header: str) -> tuple[str, ...]:
        if not header:
            return ()
        hit = self._seen.get(header)
        if hit is None:
            hit = self._judge(header)
            if len(header) <= CACHE_MAX_LEN:
                self._seen[header] = hit
                if len(self._seen) > CACHE_SIZE:
                    self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(header)
        if isinstance(hit, FlagError):
            raise FlagError(hit.message, details=hit.details)
        return hit

    def _judge(self, header: str) -> tuple[str, ...] | FlagError:
        validation = validate_flags(header, self.policy)
        if validation.ok:
            return validation.canonical
        return FlagError(problems_message(len(validation.problems)), details=validation.problems)


__all__ = ["FlagGate"]
