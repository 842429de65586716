"""llama-swap's ``config.yaml``, read with llama-swap's rules (one reader for serve and bench).

- :mod:`.files`: YAML text, ``${env.NAME}``, ``--config-dir`` merging.
- :mod:`.macros`: ``${name}``, ``${MODEL_ID}``, ``${PORT}``, ``${PID}``.
- :mod:`.command`: comment lines, continuations, the shell-like split, llama-server's args.
- :mod:`.reader`: the document -> :class:`SwapConfig`, every problem and warning collected.
- :mod:`.native`: a :class:`SwapConfig` -> llamasc's own settings.
"""

from __future__ import annotations

from collections.abc import Mapping

from llamasc.config.llamaswap.command import (
    is_llama_server,
    join_continuations,
    split_command,
    split_server_args,
    strip_comment_lines,
)
from llamasc.config.llamaswap.files import load_text, read_sources
from llamasc.config.llamaswap.model import Filters, SwapConfig, SwapGroup, SwapModel, SwapPeer
from llamasc.config.llamaswap.reader import is_llama_swap, parse_document


def parse_text(
    text: str,
    *,
    source: str = "config.yaml",
    environ: Mapping[str, str] | None = None,
    windows: bool | None = None,
) -> SwapConfig:
    """Parse a llama-swap config's text; ``environ`` serves ``${env.NAME}`` (default: none).

    Raises ConfigError only when the text is not a YAML mapping or a variable is unset.
    """
    data = load_text(text, source, {} if environ is None else environ)
    return parse_document(data, source=source, windows=windows)


__all__ = [
    "Filters",
    "SwapConfig",
    "SwapGroup",
    "SwapModel",
    "SwapPeer",
    "is_llama_server",
    "is_llama_swap",
    "join_continuations",
    "load_text",
    "parse_document",
    "parse_text",
    "read_sources",
    "split_command",
    "split_server_args",
    "strip_comment_lines",
]
