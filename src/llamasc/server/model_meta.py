"""A model's GGUF metadata as ``/v1/models`` shows it (``meta``) and ``llamasc models`` prints.

No file paths here: clients of the daemon are not told where models live (the same reason
every sidecar gets ``--alias``). ``llamasc models`` adds the paths itself, locally.
"""

from __future__ import annotations

from typing import Any

from llamasc.config.models import ModelEntry


def model_meta_json(entry: ModelEntry) -> dict[str, Any]:
    """``{"architecture", "parameters", "size_label", "quantization", "context_length",
    "chat_template", "vision", "type", "parts", "source"}``; unknown values are null."""
    m = entry.meta
    return {
        "architecture": m.architecture if m else None,
        "name": m.name if m else None,
        "parameters": m.parameters if m else None,
        "size_label": m.size_label if m else None,
        "quantization": m.file_type if m else None,
        "context_length": m.context_length if m else None,
        "chat_template": m.chat_template if m else None,
        "vision": entry.mmproj is not None,
        "type": m.kind if m else None,
        "parts": entry.parts,
        "source": entry.source,
    }


__all__ = ["model_meta_json"]
