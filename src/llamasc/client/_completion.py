"""One answered request: its text, finish reason, usage and the server's own timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llamasc.client._timings import Timings


@dataclass
class Completion:
    """One answered request, with what the client measured and what the server reported.

    ``timings`` are llama-server's (``completion.timings.decode_tokens_per_second``; empty
    from servers that do not report them); ``ttft_s`` and ``elapsed_s`` are measured here.
    """

    text: str
    finish_reason: str | None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    ttft_s: float | None = None
    elapsed_s: float = 0.0
    model: str | None = None
    reasoning: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        given: Any = self.timings  # a plain mapping from a caller becomes a Timings
        if not isinstance(given, Timings):
            self.timings = Timings(given or {})


__all__ = ["Completion"]
