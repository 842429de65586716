"""A reload keeps an opaque upstream whose command did not change, and replaces one whose
command (or cmdStop, proxy, checkEndpoint...) did."""

from __future__ import annotations

from pathlib import Path

from llamasc.config.models import ModelCatalog, ModelEntry
from llamasc.config.swapfields import OpaqueSettings
from llamasc.server.reload import diff_catalogs


def _entry(mid: str, *argv: str, check: str = "/health") -> ModelEntry:
    opaque = OpaqueSettings(argv=argv, check_endpoint=check)
    return ModelEntry(mid, Path(argv[0]), opaque=opaque)


def test_opaque_models_are_kept_or_changed_by_their_command() -> None:
    old = ModelCatalog.of(
        [_entry("a", "vllm", "serve", "x"), _entry("b", "whisper"), _entry("c", "tts")]
    )
    new = ModelCatalog.of(
        [
            _entry("a", "vllm", "serve", "x"),
            _entry("b", "whisper", "--threads", "4"),
            _entry("c", "tts", check="none"),
        ]
    )
    catalog, result = diff_catalogs(old, new)
    assert result.kept == ["a"]
    assert result.changed == ["b", "c"]
    assert catalog.models["b"].key_id != old.models["b"].key_id  # a new sidecar key
    assert catalog.is_opaque("a")
