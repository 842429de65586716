"""llama-server's own timings of one answer, as a read-only mapping with typed names."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Timings(Mapping[str, Any]):
    """The ``timings`` object llama-server adds to an answer (empty from other servers).

    It stays a mapping of llama-server's own keys (``predicted_per_second``, ``prompt_n``,
    ``draft_n_accepted`` ...), so nothing is lost when llama-server adds one; the properties
    give the common ones a name and a type, and are None when the server did not say.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Timings({self._data!r})"

    def _number(self, key: str) -> float | None:
        value = self._data.get(key)
        return float(value) if isinstance(value, int | float) else None

    def _count(self, key: str) -> int | None:
        value = self._data.get(key)
        return int(value) if isinstance(value, int | float) else None

    @property
    def prompt_tokens(self) -> int | None:
        """Prompt tokens evaluated (those served from the prompt cache not counted)."""
        return self._count("prompt_n")

    @property
    def prompt_seconds(self) -> float | None:
        ms = self._number("prompt_ms")
        return None if ms is None else ms / 1000.0

    @property
    def prompt_tokens_per_second(self) -> float | None:
        return self._number("prompt_per_second")

    @property
    def decode_tokens(self) -> int | None:
        """Tokens generated."""
        return self._count("predicted_n")

    @property
    def decode_seconds(self) -> float | None:
        ms = self._number("predicted_ms")
        return None if ms is None else ms / 1000.0

    @property
    def decode_tokens_per_second(self) -> float | None:
        return self._number("predicted_per_second")

    @property
    def cached_tokens(self) -> int | None:
        """Prompt tokens reused from the slot's cache."""
        return self._count("cache_n")

    @property
    def draft_tokens(self) -> int | None:
        """Tokens proposed by speculative decoding (None without it)."""
        return self._count("draft_n")

    @property
    def draft_accepted(self) -> int | None:
        return self._count("draft_n_accepted")


__all__ = ["Timings"]
